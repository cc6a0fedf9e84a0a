// Package certreload serves a TLS certificate and key from their files,
// read again when either changes, so that a renewed certificate needs no
// restart.
package certreload

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
)

// Reloader serves a certificate and key, read again at a handshake when
// either file changed.
type Reloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	stamp             string
}

// New reads the pair once, so that a wrong file is an error at start.
func New(certFile, keyFile string) (*Reloader, error) {
	c := &Reloader{certFile: certFile, keyFile: keyFile}
	if _, err := c.GetCertificate(nil); err != nil {
		return nil, err
	}
	return c, nil
}

// GetCertificate is tls.Config's: the pair in force, read again when a
// file's modification time or size changed. A pair that does not load
// (a renewal half written) leaves the one in force.
func (c *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	stamp := ""
	for _, f := range []string{c.certFile, c.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			stamp += fmt.Sprintf("%d.%d;", fi.ModTime().UnixNano(), fi.Size())
		}
	}
	if c.cert != nil && stamp == c.stamp {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil
		}
		return nil, err
	}
	c.cert, c.stamp = &cert, stamp
	return c.cert, nil
}
