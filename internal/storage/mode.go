package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/storage/encfs"
)

// A data dir records in a small plaintext file whether its engine's files
// are encrypted, so that a node started with the other setting fails with
// a clear error instead of reading ciphertext as data (or writing
// plaintext files into an encrypted engine). The file is written,
// atomically, before the engine's first file; a dir that holds an engine
// but no marker (written before markers existed, or whose marker was
// removed) gets the mode its files show.
const (
	modeFileName = "CONCORD-ENCRYPTION"
	modeTempName = modeFileName + ".tmp"

	modePlaintext = "none"
	modeAESCTR    = "aes-256-ctr"
)

// ErrEncryptionMode is wrapped by the errors about a data dir whose
// encryption does not match the Options (or whose marker is damaged).
var ErrEncryptionMode = errors.New("storage: data dir encryption mismatch")

// isModeFile reports whether name is one of the marker's files, which
// are not the engine's.
func isModeFile(name string) bool { return name == modeFileName || name == modeTempName }

func (o Options) mode() string {
	if o.Encryption != nil {
		return modeAESCTR
	}
	return modePlaintext
}

// checkMode fails if dir was written in another mode than o's; with
// create it records o's mode if dir has no marker yet. base is the file
// system beneath any encryption; dir must exist if create is set.
func (o Options) checkMode(base vfs.FS, dir string, create bool) error {
	want := o.mode()
	have, recorded, err := readMode(base, dir)
	if err != nil {
		return err
	}
	if have != "" && have != want {
		how := map[string]string{
			modePlaintext: "without encryption; start it without --encryption-key-file (an unencrypted dir cannot be encrypted in place: restore a backup into a new dir)",
			modeAESCTR:    "with encryption (" + modeAESCTR + "); start it with its --encryption-key-file",
		}[have]
		return fmt.Errorf("%w: %s was written %s", ErrEncryptionMode, dir, how)
	}
	if recorded || !create {
		return nil
	}
	return writeMode(base, dir, want)
}

// readMode returns dir's mode: recorded in its marker, or seen in its
// files ("" for a dir with no engine file).
func readMode(base vfs.FS, dir string) (mode string, recorded bool, err error) {
	f, err := base.Open(base.PathJoin(dir, modeFileName))
	switch {
	case err == nil:
		data, rerr := io.ReadAll(io.LimitReader(f, 256))
		err = errors.Join(rerr, f.Close())
		if err != nil {
			return "", false, fmt.Errorf("storage: %s: %w", modeFileName, err)
		}
		mode, ok := strings.CutPrefix(strings.TrimSpace(string(data)), "encryption: ")
		if !ok || (mode != modePlaintext && mode != modeAESCTR) {
			return "", false, fmt.Errorf("%w: %s has a damaged %s (%q)", ErrEncryptionMode, dir, modeFileName, data)
		}
		return mode, true, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", false, fmt.Errorf("storage: %s: %w", modeFileName, err)
	}
	mode, err = sniffMode(base, dir)
	return mode, false, err
}

// sniffMode looks at the engine's files: any with encfs's header means
// the engine is encrypted, any non-empty one without it that it is not.
func sniffMode(base vfs.FS, dir string) (string, error) {
	names, err := base.List(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("storage: %w", err)
	}
	mode := ""
	for _, name := range names {
		if isModeFile(name) {
			continue
		}
		path := base.PathJoin(dir, name)
		if fi, err := base.Stat(path); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			continue
		}
		enc, err := encfs.IsEncrypted(base, path)
		if err != nil {
			return "", fmt.Errorf("storage: %w", err)
		}
		if enc {
			return modeAESCTR, nil
		}
		mode = modePlaintext
	}
	return mode, nil
}

// writeMode records mode in dir's marker, atomically and durably.
func writeMode(base vfs.FS, dir, mode string) error {
	tmp, final := base.PathJoin(dir, modeTempName), base.PathJoin(dir, modeFileName)
	f, err := base.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("storage: %s: %w", modeFileName, err)
	}
	_, err = f.Write([]byte("encryption: " + mode + "\n"))
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = base.Rename(tmp, final)
	}
	if err == nil {
		var d vfs.File
		if d, err = base.OpenDir(dir); err == nil {
			err = errors.Join(d.Sync(), d.Close())
		}
	}
	if err != nil {
		return fmt.Errorf("storage: %s: %w", modeFileName, err)
	}
	return nil
}
