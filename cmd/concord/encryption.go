package main

import (
	"github.com/spf13/pflag"

	"github.com/concorddb/concord/internal/server"
)

// addEncryptionFlags adds the encryption-at-rest flags to a command that
// opens a data dir (start, snapshot restore).
func addEncryptionFlags(f *pflag.FlagSet, cfg *server.Config) {
	f.StringVar(&cfg.EncryptionKeyFile, "encryption-key-file", "",
		"file holding the AES-256 key that encrypts every file of the data dir, Raft log included: 32 raw bytes, 64 hex digits or base64 of 32 bytes (openssl rand -hex 32); new files use it (default: no encryption; a dir records its mode and refuses the other)")
	f.StringSliceVar(&cfg.EncryptionOldKeyFiles, "encryption-old-key-files", nil,
		"comma-separated files of earlier keys that files may still be encrypted with, after a rotation; compactions rewrite data under --encryption-key-file, and the start log's files_by_key says when an old key holds no file")
}
