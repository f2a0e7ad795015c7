package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/concorddb/concord/internal/storage"
	"github.com/concorddb/concord/internal/storage/encfs"
)

// newKeyFile writes a random key, hex-encoded, to a file outside any data
// dir and returns its path, raw bytes and id.
func newKeyFile(t *testing.T) (path string, raw []byte, id string) {
	t.Helper()
	raw = make([]byte, encfs.KeyBytes)
	rand.Read(raw)
	path = filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := encfs.NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return path, raw, k.ID().String()
}

// filesHolding returns the files under dir whose bytes contain any of
// needles.
func filesHolding(t *testing.T, dir string, needles ...[]byte) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(data, n) {
				out = append(out, strings.TrimPrefix(path, dir))
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeAndFlush puts key=val through node 0, compacts the keyspace at the
// new revision and defragments (a full compaction of the engine), so
// that the pair is in sstables as well as in the WAL and the Raft log.
func writeAndFlush(t *testing.T, c *LocalCluster, key, val string) {
	t.Helper()
	cli := client(t, c, 0)
	rev := putRetry(t, cli, key, val)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Defragment(ctx, c.ClientURLs()[0]); err != nil {
		t.Fatal(err)
	}
}

func randomText(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// With --encryption-key-file, no file under the data dir holds a written
// key or value (or the encryption key) in the clear; the same writes on
// an unencrypted node show the scan finds them when they are there. The
// node restarts on its data, and then after a key rotation.
func TestEncryptionAtRest(t *testing.T) {
	t.Parallel()
	keyFile, rawKey, keyID := newKeyFile(t)
	key, val := randomText("enc-key-"), randomText("enc-val-")

	plain := startCluster(t, 1, nil)
	writeAndFlush(t, plain, key, val)
	plain.Stop()
	if found := filesHolding(t, plain.dir, []byte(key), []byte(val)); len(found) == 0 {
		t.Fatal("control: the unencrypted node's files do not hold the written pair; the scan proves nothing")
	}

	c := startCluster(t, 1, func(_ int, cfg *Config) { cfg.EncryptionKeyFile = keyFile })
	writeAndFlush(t, c, key, val)
	c.Stop()
	needles := [][]byte{[]byte(key), []byte(val), rawKey, []byte(hex.EncodeToString(rawKey))}
	if found := filesHolding(t, c.dir, needles...); len(found) > 0 {
		t.Fatalf("files holding plaintext under an encrypted data dir: %v", found)
	}
	if err := c.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	if got := get(t, client(t, c, 0), key); len(got.Kvs) != 1 || string(got.Kvs[0].Value) != val {
		t.Fatalf("after restart %s reads %v", key, got.Kvs)
	}
	c.Stop()

	// The wrong mode, a missing key and a bad key file fail the start.
	cfg := c.cfgs[0]
	noKey := cfg
	noKey.EncryptionKeyFile = ""
	if _, err := Start(noKey); !errors.Is(err, storage.ErrEncryptionMode) {
		t.Fatalf("start without the key: %v; want ErrEncryptionMode", err)
	}
	newFile, _, _ := newKeyFile(t)
	onlyNew := cfg
	onlyNew.EncryptionKeyFile = newFile
	if _, err := Start(onlyNew); !errors.Is(err, encfs.ErrUnknownKey) || !strings.Contains(err.Error(), keyID) {
		t.Fatalf("start with only a new key: %v; want ErrUnknownKey naming %s", err, keyID)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badKey := cfg
	badKey.EncryptionKeyFile = short
	if _, err := Start(badKey); err == nil || !strings.Contains(err.Error(), "32-byte") {
		t.Fatalf("start with a 16-byte key: %v", err)
	}
	if _, err := Start(plain.cfgs[0]); err != nil {
		t.Fatalf("the unencrypted node's restart: %v", err)
	}
	// A plaintext dir cannot be opened with encryption.
	plain.Stop()
	encPlain := plain.cfgs[0]
	encPlain.EncryptionKeyFile = keyFile
	if _, err := Start(encPlain); !errors.Is(err, storage.ErrEncryptionMode) {
		t.Fatalf("encrypted start of an unencrypted dir: %v; want ErrEncryptionMode", err)
	}

	// Rotation: the new key encrypts new files, the old one still reads
	// the old ones.
	c.cfgs[0].EncryptionKeyFile = newFile
	c.cfgs[0].EncryptionOldKeyFiles = []string{keyFile}
	if err := c.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	if got := get(t, client(t, c, 0), key); len(got.Kvs) != 1 || string(got.Kvs[0].Value) != val {
		t.Fatalf("after rotation %s reads %v", key, got.Kvs)
	}
	key2, val2 := randomText("enc-key2-"), randomText("enc-val2-")
	writeAndFlush(t, c, key2, val2)
	c.Stop()
	if found := filesHolding(t, c.dir, []byte(key2), []byte(val2), []byte(key), []byte(val)); len(found) > 0 {
		t.Fatalf("files holding plaintext after rotation: %v", found)
	}
	if err := c.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	cli := client(t, c, 0)
	for k, v := range map[string]string{key: val, key2: val2} {
		if got := get(t, cli, k); len(got.Kvs) != 1 || string(got.Kvs[0].Value) != v {
			t.Fatalf("after the second restart %s reads %v", k, got.Kvs)
		}
	}
	// Restarts rewrote the WAL, OPTIONS and MANIFEST, and the full
	// compaction every table, under the new key: the old one can go.
	c.Stop()
	c.cfgs[0].EncryptionOldKeyFiles = nil
	if err := c.RestartNode(0); err != nil {
		t.Fatalf("restart without the old key after a full compaction: %v", err)
	}
	if got := get(t, client(t, c, 0), key); len(got.Kvs) != 1 || string(got.Kvs[0].Value) != val {
		t.Fatalf("without the old key %s reads %v", key, got.Kvs)
	}
	c.Stop()
}
