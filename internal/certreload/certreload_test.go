package certreload

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a self-signed certificate for name and its key.
func writePair(t *testing.T, certFile, keyFile, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// served is the common name of the certificate r serves.
func served(t *testing.T, r *Reloader) string {
	t.Helper()
	c, err := r.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

// touch moves a file's modification time, which a rewrite within the
// file system's time granularity might not.
func touch(t *testing.T, path string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

func TestRenewedCertificateIsServedAndAHalfWrittenOneIsNot(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, certFile, keyFile, "first")
	r, err := New(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := served(t, r); got != "first" {
		t.Fatalf("serves %q, want first", got)
	}

	writePair(t, certFile, keyFile, "renewed")
	touch(t, certFile, time.Now().Add(time.Minute))
	if got := served(t, r); got != "renewed" {
		t.Errorf("after the renewal, serves %q", got)
	}

	// The certificate of a third pair written, its key not yet.
	other := filepath.Join(dir, "other-key.pem")
	writePair(t, certFile, other, "half")
	touch(t, certFile, time.Now().Add(2*time.Minute))
	if got := served(t, r); got != "renewed" {
		t.Errorf("with a certificate that does not match its key, serves %q; want the one in force", got)
	}
}

func TestNewRefusesAPairThatDoesNotLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := New(filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing-key.pem")); err == nil {
		t.Error("a missing pair was taken")
	}
}
