// Package recordings serves call recordings from a folder behind
// capability links: a link names a call and carries an HMAC of it under a
// key only the service holds, so whoever has one link can play that
// recording and nothing else. It makes the links (Signer), checks and
// serves them (Server), and keeps the keys (Key, Ring); finding which file
// is a call's recording is left to the caller (Locator).
//
// A Server serves each file as it is, or, with Config.Format, converted by
// ffmpeg to MP3 or Opus: browsers play those, where they play none of
// Asterisk's GSM-in-WAV (WAV, wav49), raw .gsm or .sln. A recording is
// converted once, on its first request, into a cache folder of bounded
// size (Config.CacheDir, Config.CacheBytes).
package recordings

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the length of a key in bytes: SHA-256's block-sized keys gain
// nothing past its output size.
const KeySize = 32

// Key is a secret that signs links. Every fmt verb prints it as REDACTED,
// so it cannot reach a log or an error by accident.
type Key struct{ b [KeySize]byte }

// Format prints REDACTED for every verb.
func (Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "REDACTED") }

// String is REDACTED.
func (Key) String() string { return "REDACTED" }

// GoString is REDACTED too, for %#v.
func (Key) GoString() string { return "REDACTED" }

// MarshalText keeps the key out of JSON, TOML and the like.
func (Key) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

// LoadOrCreateKey reads the key in path, or, when there is none, makes one
// from crypto/rand and writes it there with mode 0600 (as hex, one line).
// It refuses a key file that others than its owner may read, since anyone
// who reads it can make links to every recording.
func LoadOrCreateKey(path string) (Key, error) {
	k, err := LoadKey(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	if _, err := rand.Read(k.b[:]); err != nil {
		return Key{}, fmt.Errorf("recordings: making a key: %w", err)
	}
	// Written to a temporary file then linked into place, so that a
	// reader never sees half a key and two starts racing agree on one.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return Key{}, fmt.Errorf("recordings: writing the key: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.WriteString(hex.EncodeToString(k.b[:]) + "\n")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Key{}, fmt.Errorf("recordings: writing the key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return LoadKey(path)
		}
		return Key{}, fmt.Errorf("recordings: writing the key: %w", err)
	}
	return k, nil
}

// LoadKey reads a key written by LoadOrCreateKey (a previous key kept for
// links already handed out, say).
func LoadKey(path string) (Key, error) {
	var k Key
	fi, err := os.Stat(path)
	if err != nil {
		return k, fmt.Errorf("recordings: key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return k, fmt.Errorf("recordings: key file %s has mode %04o: others may read it; chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return k, fmt.Errorf("recordings: key: %w", err)
	}
	s := strings.TrimSpace(string(b))
	// Decoded by hand so that no error message quotes the key's text.
	if len(s) != 2*KeySize {
		return k, fmt.Errorf("recordings: key file %s: not %d hex digits", path, 2*KeySize)
	}
	if _, err := hex.Decode(k.b[:], []byte(s)); err != nil {
		return Key{}, fmt.Errorf("recordings: key file %s: not %d hex digits", path, 2*KeySize)
	}
	return k, nil
}

// Ring is the current key, which signs new links, and the previous ones,
// which still verify the links they signed. Dropping a previous key
// revokes its links; replacing every key revokes all links at once.
type Ring struct {
	current  Key
	previous []Key
}

// NewRing makes a ring that signs with current and accepts previous too.
func NewRing(current Key, previous ...Key) *Ring {
	return &Ring{current: current, previous: append([]Key(nil), previous...)}
}

// Format keeps the keys out of any output.
func (*Ring) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "REDACTED") }

func mac(k Key, msg []byte) []byte {
	h := hmac.New(sha256.New, k.b[:])
	h.Write(msg)
	return h.Sum(nil)[:macSize]
}

func (r *Ring) sign(msg []byte) []byte { return mac(r.current, msg) }

// verify compares got with the MAC under every key, each in constant
// time, and always tries them all, so the time taken does not tell which
// key (if any) matched.
func (r *Ring) verify(msg, got []byte) bool {
	ok := hmac.Equal(mac(r.current, msg), got)
	for _, k := range r.previous {
		if hmac.Equal(mac(k, msg), got) {
			ok = true
		}
	}
	return ok
}
