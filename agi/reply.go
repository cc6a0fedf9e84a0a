package agi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Reply is one reply from Asterisk to a command.
type Reply struct {
	Code    int               // 200 on success
	Result  string            // the value of result=, possibly ""
	Data    string            // raw text between the first '(' and the last ')'
	HasData bool              // whether the reply had a parenthesised part, even "()"
	Extra   map[string]string // key=value pairs after result and data, e.g. endpos; nil if none
	Message string            // for codes other than 200: the text after the code
	Raw     string            // the reply as received; lines joined by "\n" for a multi-line reply
}

// Errors matched by CommandError.Is, by reply code.
var (
	ErrInvalidCommand = errors.New("agi: invalid or unknown command")              // 510
	ErrDeadChannel    = errors.New("agi: command not permitted on a dead channel") // 511
	ErrSyntax         = errors.New("agi: invalid command syntax")                  // 520
)

// CommandError is a reply other than 200 to a command.
type CommandError struct {
	Code    int
	Message string   // text after the code, e.g. "Invalid or unknown command"
	Usage   []string // for a multi-line 520: the usage lines between its first and last line
	Command string   // the command word(s), without arguments, e.g. "GET VARIABLE"
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("agi: %s: %d %s", e.Command, e.Code, e.Message)
}

// Is lets errors.Is match ErrInvalidCommand, ErrDeadChannel and ErrSyntax.
func (e *CommandError) Is(target error) bool {
	switch target {
	case ErrInvalidCommand:
		return e.Code == 510
	case ErrDeadChannel:
		return e.Code == 511
	case ErrSyntax:
		return e.Code == 520
	}
	return false
}

// ParseReply parses one reply line: "200 result=1 (data) endpos=5",
// "510 Invalid or unknown command", or the first line "520-..." of a
// multi-line reply (whose remaining lines the session reads). The data is
// kept raw: spaces, quotes and parentheses inside it are Asterisk's value.
func ParseReply(line string) (Reply, error) {
	r := Reply{Raw: line}
	if len(line) < 3 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) {
		return r, fmt.Errorf("agi: reply %.40q does not start with a 3-digit code", line)
	}
	if len(line) > 3 && line[3] != ' ' && line[3] != '-' {
		return r, fmt.Errorf("agi: reply %.40q: no space after the code", line)
	}
	r.Code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	rest := ""
	if len(line) > 4 {
		rest = line[4:]
	}
	if r.Code != 200 && r.Code != 100 {
		r.Message = rest
		return r, nil
	}
	if r.Code == 100 && !strings.HasPrefix(rest, "result=") {
		r.Message = rest
		return r, nil
	}
	rest, ok := strings.CutPrefix(rest, "result=")
	if !ok {
		return r, fmt.Errorf("agi: reply %.40q has no result=", line)
	}
	r.Result, rest, _ = strings.Cut(rest, " ")
	if strings.HasPrefix(rest, "(") {
		end := strings.LastIndexByte(rest, ')')
		if end < 0 {
			return r, fmt.Errorf("agi: reply %.40q: unbalanced '('", line)
		}
		r.Data, r.HasData = rest[1:end], true
		rest = strings.TrimPrefix(rest[end+1:], " ")
	}
	for rest != "" {
		var field string
		field, rest, _ = strings.Cut(rest, " ")
		if field == "" {
			continue
		}
		if r.Extra == nil {
			r.Extra = make(map[string]string, 1)
		}
		k, v, _ := strings.Cut(field, "=")
		r.Extra[k] = v
	}
	return r, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Int returns the result as a number, as most commands' results are.
func (r Reply) Int() (int, error) {
	n, err := strconv.Atoi(r.Result)
	if err != nil {
		return 0, fmt.Errorf("agi: reply %.60q: result %q is not a number", r.Raw, r.Result)
	}
	return n, nil
}

// EndPos returns the reply's endpos=, where a sound stopped (in samples; in
// milliseconds for CONTROL STREAM FILE), and whether the reply had one.
func (r Reply) EndPos() (int64, bool) {
	v, ok := r.Extra["endpos"]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}
