// Package encfs encrypts files at rest: FS wraps a Pebble vfs.FS so that
// every byte a file holds on the disk beneath is AES-256-CTR ciphertext,
// while the engine above reads, writes and stats plaintext.
//
// # File layout
//
// Every regular file written through FS starts with a fixed header of
// HeaderBytes (64) bytes, followed by the ciphertext of the plaintext:
//
//	0:8    magic "CNCDENC\x00"
//	8      format version (1)
//	9      cipher (1: AES-256-CTR)
//	10:16  zero
//	16:24  key id: the first 8 bytes of SHA-256("concord encfs key id\x00" | key)
//	24:40  IV: the initial 128-bit big-endian CTR counter, random per file
//	40:60  zero
//	60:64  CRC-32C (Castagnoli) of bytes 0:60, big-endian
//
// Plaintext byte i of a file is ciphertext byte HeaderBytes+i, XORed with
// byte i%16 of AES(key, IV + i/16). CTR mode encrypts any offset on its own,
// so ReadAt (Pebble reads sstable blocks at random offsets), WriteAt and
// appends cost the same as on a plaintext file, and sizes differ from the
// plaintext's by exactly the header: Stat, Size and every offset the engine
// sees hide it.
//
// # The order of things
//
//  1. Create (and ReuseForWrite, and OpenReadWrite of an empty file) draws a
//     fresh random IV and writes the header, under the active key, before
//     any data. A keystream is never reused: a recycled WAL gets a new IV,
//     so the old log's bytes beyond what the new log writes decrypt to
//     noise, which Pebble's WAL reader treats as the log's end (as it does
//     the torn tail of a crashed log); Pebble closes every WAL but the
//     newest with an EOF trailer, so only the newest ever ends in noise.
//  2. Open reads the header and looks its key id up among the keys given
//     to New (the active key and the old ones). A file under a key that is
//     not given fails with an error wrapping ErrUnknownKey that names the
//     key id; it is never decrypted with the wrong key (a file that holds
//     a header and no data needs no key: it opens as empty). CheckDir does this
//     for every file of a directory at once, so a node fails at start
//     rather than at the first read of an old sstable.
//  3. A file whose header is absent (size 0) or all zeros was created but
//     never synced (the header is written before any data and every sync
//     covers it), so Open shows it as an empty file, as the disk would
//     after a crash that lost the file's unsynced writes.
//
// # Keys and rotation
//
// A key is 32 bytes (AES-256). New files always use the active key; old
// keys keep the files written under them readable until compactions (and
// Pebble's rotation of its WAL, MANIFEST and OPTIONS files) rewrite them
// under the active one. Renames and hard links keep a file's header, so
// they need no bookkeeping: nothing outside a file says how to read it.
//
// # What it does not do
//
// CTR gives confidentiality, not integrity: an attacker who can write the
// disk can flip plaintext bits. Pebble's own checksums (sstable blocks, WAL
// chunks, MANIFEST records) still catch accidental corruption. Directory
// names, file names, sizes and lock files are not hidden. Lock files
// (FS.Lock) are empty and are passed through.
package encfs
