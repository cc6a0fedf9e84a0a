package agi

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// recorder writes a session's transcript in the agitest format: comments,
// the environment lines, an empty line, then "> " for each line sent and
// "< " for each line received, in the order the server saw them. A nil
// recorder records nothing.
type recorder struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	srv  *Server
	path string
}

func (s *Server) newRecorder(sess *Session) *recorder {
	if s.TranscriptDir == "" {
		return nil
	}
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	name := fmt.Sprintf("%s-%06d-%s.agi", sess.start.UTC().Format("20060102T150405.000000"), seq, fileSafe(sess.env.UniqueID()))
	path := filepath.Join(s.TranscriptDir, name)
	// Callers' numbers and channel data: not for every user.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		sess.Log().Warn().Err(err).Msg("AGI transcript not recorded")
		return nil
	}
	r := &recorder{f: f, w: bufio.NewWriter(f), srv: s, path: path}
	fmt.Fprintf(r.w, "# remote %s at %s\n", sess.conn.RemoteAddr(), sess.start.UTC().Format(time.RFC3339Nano))
	for _, l := range sess.env.Lines() {
		r.w.WriteString(l)
		r.w.WriteByte('\n')
	}
	r.w.WriteByte('\n')
	return r
}

func (r *recorder) sent(line []byte) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.w.WriteString("> ")
	r.w.Write(line)
	r.w.WriteByte('\n')
	r.mu.Unlock()
}

func (r *recorder) received(line string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.w.WriteString("< ")
	r.w.WriteString(line)
	r.w.WriteByte('\n')
	r.mu.Unlock()
}

func (r *recorder) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.srv.Log.Warn().Err(err).Str("path", r.path).Msg("AGI transcript incomplete")
	}
}

// fileSafe keeps a uniqueid ("systemname-1795524649.1") usable as part of a
// file name.
func fileSafe(s string) string {
	if s == "" {
		return "none"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}
