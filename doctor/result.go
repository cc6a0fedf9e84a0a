package doctor

import (
	"fmt"
	"io"
)

// Status is a check's verdict.
type Status int

// The verdicts, in order of gravity.
const (
	OK Status = iota
	Warn
	Fail
)

func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case Warn:
		return "WARN"
	case Fail:
		return "FAIL"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result is what one check found.
type Result struct {
	Status Status
	// Check says what was checked, e.g. "module func_env.so loaded".
	Check string
	// Detail is what was seen, when it helps (may be empty).
	Detail string
	// Fix says, for a non-OK result, what to change: the file, the option,
	// the line to add.
	Fix string
}

func ok(check, detail string) Result { return Result{Status: OK, Check: check, Detail: detail} }

func warn(check, detail, fix string) Result {
	return Result{Status: Warn, Check: check, Detail: detail, Fix: fix}
}

func fail(check, detail, fix string) Result {
	return Result{Status: Fail, Check: check, Detail: detail, Fix: fix}
}

// Line renders the result as one line.
func (r Result) Line() string {
	s := fmt.Sprintf("%-4s %s", r.Status, r.Check)
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	if r.Status != OK && r.Fix != "" {
		s += " -> " + r.Fix
	}
	return s
}

// Report is the results of a doctor's run, in the order checked.
type Report []Result

// Render writes one line per result.
func (rep Report) Render(w io.Writer) error {
	for _, r := range rep {
		if _, err := fmt.Fprintln(w, r.Line()); err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
	}
	return nil
}

// ExitCode is 1 when any check failed, else 0: warnings do not fail a run.
func (rep Report) ExitCode() int {
	for _, r := range rep {
		if r.Status == Fail {
			return 1
		}
	}
	return 0
}
