package agi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrLineTooLong reports a line from Asterisk longer than the configured limit.
var ErrLineTooLong = errors.New("agi: line too long")

// EnvVar is one line of the environment block, split on its first ": ".
type EnvVar struct {
	Key   string
	Value string
}

// Env is the environment block Asterisk sends before the first command. It
// keeps every line in the order received, so that nothing Asterisk said is
// lost, and the agi_arg_N values as positional arguments.
type Env struct {
	block string // the lines, without their endings, each followed by '\n'
	args  []string
}

// Vars returns every variable in the order Asterisk sent it.
func (e *Env) Vars() []EnvVar {
	var vars []EnvVar
	for rest := e.block; rest != ""; {
		var v EnvVar
		v, rest = nextEnvVar(rest)
		vars = append(vars, v)
	}
	return vars
}

// nextEnvVar splits the first line off block, which ReadEnv checked.
func nextEnvVar(block string) (v EnvVar, rest string) {
	line, rest, _ := strings.Cut(block, "\n")
	key, value, ok := strings.Cut(line, ": ")
	if !ok {
		key = strings.TrimSuffix(line, ":")
	}
	return EnvVar{Key: key, Value: value}, rest
}

// Lines returns the environment lines exactly as Asterisk sent them, trailing
// spaces kept, without their line endings.
func (e *Env) Lines() []string {
	lines := strings.SplitAfter(e.block, "\n")
	lines = lines[:len(lines)-1] // after the last '\n'
	for i, l := range lines {
		lines[i] = l[:len(l)-1]
	}
	return lines
}

// Get returns the raw value of key ("agi_channel"), "" if absent. When a key
// is repeated the first occurrence wins.
func (e *Env) Get(key string) string {
	v, _ := e.Lookup(key)
	return v
}

// Lookup is like Get but also says whether key was present.
func (e *Env) Lookup(key string) (string, bool) {
	// The block is scanned each time: an environment is a few hundred
	// bytes, read a few times a session, and an index would cost every
	// session (idle ones included) its memory.
	for rest := e.block; rest != ""; {
		var v EnvVar
		v, rest = nextEnvVar(rest)
		if v.Key == key {
			return v.Value, true
		}
	}
	return "", false
}

// Args returns agi_arg_1..agi_arg_N in order; a gap in the numbering reads as "".
func (e *Env) Args() []string { return e.args }

// Arg returns agi_arg_n (1-based), "" if absent.
func (e *Env) Arg(n int) string {
	if n < 1 || n > len(e.args) {
		return ""
	}
	return e.args[n-1]
}

// Network reports whether the session came over FastAGI (agi_network: yes).
func (e *Env) Network() bool { return e.Get("agi_network") == "yes" }

// NetworkScript is everything after the first '/' of the AGI URL, query string
// included; "" when the URL has no script.
func (e *Env) NetworkScript() string { return e.Get("agi_network_script") }

// Request is the AGI URL as written in the dialplan.
func (e *Env) Request() string { return e.Get("agi_request") }

// Channel is the channel name, e.g. "PJSIP/loop-00000001".
func (e *Env) Channel() string { return e.Get("agi_channel") }

// Language is the channel's language.
func (e *Env) Language() string { return e.Get("agi_language") }

// Type is the channel technology, e.g. "PJSIP".
func (e *Env) Type() string { return e.Get("agi_type") }

// UniqueID is the channel's uniqueid (not the call's linkedid).
func (e *Env) UniqueID() string { return e.Get("agi_uniqueid") }

// Version is the Asterisk version.
func (e *Env) Version() string { return e.Get("agi_version") }

// CallerID is the caller number, "" where Asterisk says "unknown".
func (e *Env) CallerID() string { return known(e.Get("agi_callerid")) }

// CallerIDName is the caller name, "" where Asterisk says "unknown".
func (e *Env) CallerIDName() string { return known(e.Get("agi_calleridname")) }

// DNID is the dialled number, "" where Asterisk says "unknown".
func (e *Env) DNID() string { return known(e.Get("agi_dnid")) }

// RDNIS is the redirecting number, "" where Asterisk says "unknown".
func (e *Env) RDNIS() string { return known(e.Get("agi_rdnis")) }

// Context is the dialplan context that ran AGI.
func (e *Env) Context() string { return e.Get("agi_context") }

// Extension is the dialplan extension that ran AGI.
func (e *Env) Extension() string { return e.Get("agi_extension") }

// Priority is the dialplan priority that ran AGI, as sent ("3").
func (e *Env) Priority() string { return e.Get("agi_priority") }

// Enhanced is "1.0" for EAGI, "0.0" otherwise.
func (e *Env) Enhanced() string { return e.Get("agi_enhanced") }

// AccountCode is the channel's account code, often "".
func (e *Env) AccountCode() string { return e.Get("agi_accountcode") }

// ThreadID is the id of the Asterisk thread running the AGI.
func (e *Env) ThreadID() string { return e.Get("agi_threadid") }

// known maps Asterisk's placeholder for an empty caller field to "".
func known(v string) string {
	if v == "unknown" {
		return ""
	}
	return v
}

// ReadEnv reads an environment block up to and including its terminating
// empty line. CRLF line endings are accepted. It refuses more than maxLines
// variables, lines longer than maxLineBytes, and lines that are not
// "agi_...: value", naming the offending line, so that a peer which is not
// Asterisk is turned away quickly.
func ReadEnv(r *bufio.Reader, maxLines, maxLineBytes int) (*Env, error) {
	// The block is kept as one string that every key and value points into:
	// one allocation for the text however many lines it has.
	var block strings.Builder
	block.Grow(max(r.Buffered(), 512))
	for n := 1; ; n++ {
		line, err := readLineBytes(r, maxLineBytes)
		if err != nil {
			return nil, envError(n, maxLineBytes, err)
		}
		if len(line) == 0 {
			break
		}
		if n > maxLines {
			return nil, fmt.Errorf("agi: environment longer than %d lines", maxLines)
		}
		if !validEnvLine(line) {
			return nil, fmt.Errorf("agi: environment line %d is not \"agi_name: value\": %.40q", n, line)
		}
		block.Write(line)
		block.WriteByte('\n')
	}
	env := &Env{block: block.String()}
	for rest := env.block; rest != ""; {
		var v EnvVar
		v, rest = nextEnvVar(rest)
		if i, ok := argIndex(v.Key, maxLines); ok {
			for len(env.args) < i {
				env.args = append(env.args, "")
			}
			if env.args[i-1] == "" {
				env.args[i-1] = v.Value
			}
		}
	}
	return env, nil
}

// validEnvLine reports whether line is "agi_name: value": a key without
// blanks up to its first ": ", or up to a final ':', which is tolerated
// although Asterisk writes "key: " for an empty value.
func validEnvLine(line []byte) bool {
	colon := bytes.Index(line, []byte(": "))
	if colon < 0 && len(line) > 0 && line[len(line)-1] == ':' {
		colon = len(line) - 1
	}
	return colon >= 0 && bytes.HasPrefix(line, []byte("agi_")) && !bytes.ContainsAny(line[:colon], " \t")
}

// envError names the environment line that could not be read.
func envError(n, maxLineBytes int, err error) error {
	switch {
	case errors.Is(err, ErrLineTooLong):
		return fmt.Errorf("agi: environment line %d longer than %d bytes: %w", n, maxLineBytes, err)
	case err == io.EOF && n == 1:
		return fmt.Errorf("agi: connection closed before the environment: %w", err)
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return fmt.Errorf("agi: environment cut at line %d: %w", n, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("agi: reading environment line %d: %w", n, err)
}

// argIndex returns N for "agi_arg_N" with 1 <= N <= max; larger indexes cannot
// be positional arguments of a block of at most max lines.
func argIndex(key string, max int) (int, bool) {
	s, ok := strings.CutPrefix(key, "agi_arg_")
	if !ok || s == "" || s[0] == '0' || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, false
	}
	return n, true
}

// readLine reads one line of at most max bytes (line ending excluded) and
// returns it without its LF or CRLF. It never buffers more than max+2 bytes
// of a line, so a peer sending an endless line cannot exhaust memory.
func readLine(r *bufio.Reader, max int) (string, error) {
	b, err := readLineBytes(r, max)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// readLineBytes is readLine returning the line's bytes, valid until the
// next read from r.
func readLineBytes(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > max+2 {
			return nil, ErrLineTooLong
		}
		if err == nil && buf == nil {
			return trimEOL(chunk, max)
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return trimEOL(buf, max)
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(buf) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

func trimEOL(b []byte, max int) ([]byte, error) {
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	if len(b) > max {
		return nil, ErrLineTooLong
	}
	return b, nil
}
