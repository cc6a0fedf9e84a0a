package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// callConfig is what every session of a run shares: the script, its
// arguments and the channel variables beyond the per-session ones.
type callConfig struct {
	addr    string
	script  string
	args    []string
	vars    map[string]string // -var overrides, looked up before the built-in table
	idBase  string            // "load<tag>-<epoch>": the session number follows after a '.'
	timeout time.Duration     // bound on one session, connect to close
}

// newIDBase returns a call id base unique to this run. Asterisk's uniqueid is
// "epoch.seq", or "systemname-epoch.seq": the run tag stands in the
// systemname's place so that the service still reads the call's epoch, and
// two runs in the same second never share an id.
func newIDBase(now time.Time) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on Linux; the pid still separates runs.
		return fmt.Sprintf("load%d-%d", os.Getpid(), now.Unix())
	}
	return fmt.Sprintf("load%s-%d", hex.EncodeToString(b[:]), now.Unix())
}

func (cc *callConfig) callID(n uint64) string { return cc.idBase + "." + strconv.FormatUint(n, 10) }

// env is the environment block Asterisk sends for
// AGI(agi://addr/script,args...) on channel n, in Asterisk 22's order.
func (cc *callConfig) env(n uint64, id string) []byte {
	var b strings.Builder
	b.Grow(640)
	fmt.Fprintf(&b, "agi_network: yes\nagi_network_script: %s\nagi_request: agi://%s/%s\n", cc.script, cc.addr, cc.script)
	fmt.Fprintf(&b, "agi_channel: PJSIP/load-%08x\nagi_language: en\nagi_type: PJSIP\nagi_uniqueid: %s\n", n, id)
	b.WriteString("agi_version: 22.10.1\nagi_callerid: 4733990777\nagi_calleridname: unknown\nagi_callingpres: 0\n" +
		"agi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\nagi_dnid: 100\nagi_rdnis: unknown\n" +
		"agi_context: from-trunk\nagi_extension: 100\nagi_priority: 1\nagi_enhanced: 0.0\nagi_accountcode: \n")
	fmt.Fprintf(&b, "agi_threadid: %d\n", 140101082359488+n)
	for i, a := range cc.args {
		fmt.Fprintf(&b, "agi_arg_%d: %s\n", i+1, a)
	}
	b.WriteString("\n")
	return []byte(b.String())
}

// lookup returns a channel variable or function of session n as the
// channel would hold it; false when the channel has no such variable.
func (cc *callConfig) lookup(name, id string, n uint64, start time.Time) (string, bool) {
	if v, ok := cc.vars[name]; ok {
		return v, true
	}
	switch name {
	case "CHANNEL(linkedid)", "CHANNEL(uniqueid)", "UNIQUEID":
		// One leg per call: the caller's channel, whose uniqueid is the linkedid.
		return id, true
	case "CHANNEL", "CHANNEL(name)":
		return fmt.Sprintf("PJSIP/load-%08x", n), true
	case "CDR(start,u)":
		return fmt.Sprintf("%d.%06d", start.Unix(), start.Nanosecond()/1000), true
	case "CALLERID(num)", "CALLERID(ani)":
		return "4733990777", true
	case "CONNECTEDLINE(num)":
		return "100", true
	case "QUEUENAME":
		return "support", true
	case "CONTEXT", "MASTER_CHANNEL(CONTEXT)":
		return "from-trunk", true
	case "EXTEN":
		return "100", true
	}
	return "", false
}

// substitute evaluates ${...} in expr as GET FULL VARIABLE does; unknown
// variables read as empty and text outside ${} stays as it is.
func (cc *callConfig) substitute(expr, id string, n uint64, start time.Time) string {
	var b strings.Builder
	for {
		i := strings.Index(expr, "${")
		if i < 0 {
			b.WriteString(expr)
			return b.String()
		}
		b.WriteString(expr[:i])
		rest := expr[i+2:]
		// Functions nest parentheses but not braces in what handlers send.
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			b.WriteString(expr[i:])
			return b.String()
		}
		v, _ := cc.lookup(rest[:j], id, n, start)
		b.WriteString(v)
		expr = rest[j+1:]
	}
}

// unquote reads the first argument of an AGI command line as Asterisk's
// parse_args does: a quoted argument loses its quotes and backslashes,
// an unquoted one ends at a space.
func unquote(s string) string {
	if !strings.HasPrefix(s, `"`) {
		if i := strings.IndexByte(s, ' '); i >= 0 {
			return s[:i]
		}
		return s
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String()
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// answer returns the reply to one command line, without its LF, and the
// MOVIDESK_STATUS it set, if it set one.
func (cc *callConfig) answer(cmd, id string, n uint64, start time.Time) (reply, status string) {
	switch {
	case strings.HasPrefix(cmd, "GET FULL VARIABLE "):
		return "200 result=1 (" + cc.substitute(unquote(cmd[len("GET FULL VARIABLE "):]), id, n, start) + ")", ""
	case strings.HasPrefix(cmd, "GET VARIABLE "):
		if v, ok := cc.lookup(unquote(cmd[len("GET VARIABLE "):]), id, n, start); ok {
			return "200 result=1 (" + v + ")", ""
		}
		return "200 result=0", ""
	case strings.HasPrefix(cmd, `SET VARIABLE "MOVIDESK_STATUS" `):
		return "200 result=1", unquote(cmd[len(`SET VARIABLE "MOVIDESK_STATUS" `):])
	}
	return "200 result=1", ""
}

// Error kinds, as the report counts them.
const (
	errDial        = "dial"
	errWrite       = "write"
	errRead        = "read"
	errReset       = "reset"
	errTimeout     = "timeout"
	errNoCommand   = "closed_before_command" // the server closed without a command: refused or failed
	errOverloaded  = "open_loop_inflight_limit"
	errLineTooLong = "line_too_long"
)

// result is what one session came to.
type result struct {
	hold     time.Duration // from before connect to the server's close
	commands int
	status   string // MOVIDESK_STATUS, "" when none was set
	errKind  string // "" when the session completed
	err      error
}

// maxLine bounds a command line, so that a runaway server cannot grow the
// generator's memory.
const maxLine = 64 << 10

// play runs session n as Asterisk's side: connect, send the environment,
// answer every command until the server closes.
func (cc *callConfig) play(n uint64) result {
	id := cc.callID(n)
	start := time.Now()
	conn, err := net.DialTimeout("tcp", cc.addr, cc.timeout)
	if err != nil {
		return result{hold: time.Since(start), errKind: errDial, err: fmt.Errorf("dial %s: %w", cc.addr, err)}
	}
	defer conn.Close()
	r := result{}
	if err := conn.SetDeadline(start.Add(cc.timeout)); err != nil {
		r.errKind, r.err = errDial, fmt.Errorf("set deadline: %w", err)
		return r
	}
	if _, err := conn.Write(cc.env(n, id)); err != nil {
		r.hold = time.Since(start)
		r.errKind, r.err = classify(err, errWrite), fmt.Errorf("write environment: %w", err)
		return r
	}
	br := bufio.NewReaderSize(conn, 1024)
	out := make([]byte, 0, 128)
	for {
		line, err := readLine(br)
		if err != nil {
			r.hold = time.Since(start)
			switch {
			case errors.Is(err, io.EOF) && r.commands > 0:
				return r
			case errors.Is(err, io.EOF):
				r.errKind, r.err = errNoCommand, errors.New("server closed before sending a command")
			default:
				r.errKind, r.err = classify(err, errRead), fmt.Errorf("read command %d: %w", r.commands+1, err)
			}
			return r
		}
		r.commands++
		reply, status := cc.answer(line, id, n, start)
		if status != "" {
			r.status = status
		}
		out = append(append(out[:0], reply...), '\n')
		if _, err := conn.Write(out); err != nil {
			r.hold = time.Since(start)
			r.errKind, r.err = classify(err, errWrite), fmt.Errorf("answer command %d: %w", r.commands, err)
			return r
		}
	}
}

// readLine reads one command line without its LF.
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// Rare: assemble a long line up to maxLine.
		buf := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(buf) < maxLine {
			line, err = br.ReadSlice('\n')
			buf = append(buf, line...)
		}
		if err != nil {
			return "", errLong
		}
		line = buf
	}
	if err != nil {
		if len(line) > 0 && errors.Is(err, io.EOF) {
			// A command without its LF: the server is cut mid-line.
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	return strings.TrimSuffix(string(line[:len(line)-1]), "\r"), nil
}

var errLong = fmt.Errorf("command line longer than %d bytes", maxLine)

// classify names the kind of a connection error; def when none fits.
func classify(err error, def string) string {
	var ne net.Error
	switch {
	case errors.Is(err, errLong):
		return errLineTooLong
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errReset
	case errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	}
	return def
}

// checkLoopback refuses any address that is not on 127.0.0.0/8 or ::1: the
// generator is for this machine only.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("address %q: %s is not loopback; agiload only loads this machine", addr, ip)
		}
	}
	return nil
}
