package server

import (
	"fmt"
	"sort"
	"strings"

	"github.com/concorddb/concord/internal/storage"
	"github.com/concorddb/concord/internal/storage/encfs"
)

// storageOptions returns the engine's options for c's encryption flags,
// with the keys loaded: a key file that is missing or holds anything but
// an AES-256 key fails here, naming the flag and the file.
func (c *Config) storageOptions() (storage.Options, error) {
	if c.EncryptionKeyFile == "" {
		return storage.Options{}, nil
	}
	active, err := encfs.LoadKeyFile(c.EncryptionKeyFile)
	if err != nil {
		return storage.Options{}, fmt.Errorf("server: --encryption-key-file: %w", err)
	}
	keys := &encfs.Keys{Active: active}
	for _, path := range c.EncryptionOldKeyFiles {
		k, err := encfs.LoadKeyFile(path)
		if err != nil {
			return storage.Options{}, fmt.Errorf("server: --encryption-old-key-files: %w", err)
		}
		keys.Old = append(keys.Old, k)
	}
	return storage.Options{Encryption: keys}, nil
}

// logEncryption says whether the engine opened with opts is encrypted
// and, if so, how many of its files each key holds, so an operator can
// tell when an old key is no longer needed (no file under it).
func (n *Node) logEncryption(opts storage.Options) {
	if opts.Encryption == nil {
		return
	}
	var parts []string
	for id, count := range n.engine.FilesByKey() {
		parts = append(parts, fmt.Sprintf("%s:%d", id, count))
	}
	sort.Strings(parts)
	n.log.Info("encryption at rest is on", "active_key", opts.Encryption.Active.ID().String(), "files_by_key", strings.Join(parts, ","))
}
