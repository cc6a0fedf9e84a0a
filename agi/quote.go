package agi

import "strings"

// Quote returns arg in the form Asterisk's AGI parser (parse_args in
// res_agi.c) reads back as exactly arg: wrapped in double quotes, with every
// '"' and '\' preceded by a backslash. Asterisk knows no other escapes, so
// Go's %q must not be used. The empty string becomes "", an empty argument.
// An LF cannot be quoted: it always ends the command line.
func Quote(arg string) string {
	if !strings.ContainsAny(arg, `"\`) {
		return `"` + arg + `"`
	}
	return string(appendQuoted(make([]byte, 0, len(arg)+8), arg))
}

// appendQuoted is Quote without an intermediate string.
func appendQuoted(b []byte, arg string) []byte {
	b = append(b, '"')
	for i := 0; i < len(arg); i++ {
		if c := arg[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, arg[i])
	}
	return append(b, '"')
}
