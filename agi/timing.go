package agi

import (
	"strconv"
	"strings"
	"time"
)

// waitKind says how long a command's reply may take.
type waitKind uint8

const (
	// atOnce: Asterisk answers as soon as it has looked something up or
	// set something; the reply is bounded by the server's ReadTimeout.
	atOnce waitKind = iota
	// argMillis: the command waits as long as one of its arguments says,
	// in milliseconds, and plays nothing of unknown length; the reply is
	// bounded by that wait plus ReadTimeout. A wait Asterisk reads as
	// "forever" leaves it open.
	argMillis
	// open: the command plays a sound, runs an application or a
	// subroutine, for a time nothing in its arguments tells; the reply is
	// bounded by the caller's context and the session's deadline only.
	open
)

// command is what the session knows of an AGI command: its words, as
// Asterisk 22's "agi show commands" lists them, and how long it may take.
type command struct {
	name string
	wait waitKind
	arg  int // argMillis: the index, among the arguments, of the wait
}

// The commands of Asterisk 22 (res_agi.c, and GOSUB from app_stack.c).
var (
	cmdAnswer                  = &command{name: "ANSWER"}
	cmdAsyncAGIBreak           = &command{name: "ASYNCAGI BREAK"}
	cmdChannelStatus           = &command{name: "CHANNEL STATUS"}
	cmdDatabaseDel             = &command{name: "DATABASE DEL"}
	cmdDatabaseDelTree         = &command{name: "DATABASE DELTREE"}
	cmdDatabaseGet             = &command{name: "DATABASE GET"}
	cmdDatabasePut             = &command{name: "DATABASE PUT"}
	cmdExec                    = &command{name: "EXEC", wait: open}
	cmdGetData                 = &command{name: "GET DATA", wait: open}
	cmdGetFullVariable         = &command{name: "GET FULL VARIABLE"}
	cmdGetOption               = &command{name: "GET OPTION", wait: open}
	cmdGetVariable             = &command{name: "GET VARIABLE"}
	cmdHangup                  = &command{name: "HANGUP"}
	cmdNoop                    = &command{name: "NOOP"}
	cmdReceiveChar             = &command{name: "RECEIVE CHAR", wait: argMillis, arg: 0}
	cmdReceiveText             = &command{name: "RECEIVE TEXT", wait: argMillis, arg: 0}
	cmdRecordFile              = &command{name: "RECORD FILE", wait: argMillis, arg: 3}
	cmdSayAlpha                = &command{name: "SAY ALPHA", wait: open}
	cmdSayDigits               = &command{name: "SAY DIGITS", wait: open}
	cmdSayNumber               = &command{name: "SAY NUMBER", wait: open}
	cmdSayPhonetic             = &command{name: "SAY PHONETIC", wait: open}
	cmdSayDate                 = &command{name: "SAY DATE", wait: open}
	cmdSayTime                 = &command{name: "SAY TIME", wait: open}
	cmdSayDateTime             = &command{name: "SAY DATETIME", wait: open}
	cmdSendImage               = &command{name: "SEND IMAGE"}
	cmdSendText                = &command{name: "SEND TEXT"}
	cmdSetAutoHangup           = &command{name: "SET AUTOHANGUP"}
	cmdSetCallerID             = &command{name: "SET CALLERID"}
	cmdSetContext              = &command{name: "SET CONTEXT"}
	cmdSetExtension            = &command{name: "SET EXTENSION"}
	cmdSetMusic                = &command{name: "SET MUSIC"}
	cmdSetPriority             = &command{name: "SET PRIORITY"}
	cmdSetVariable             = &command{name: "SET VARIABLE"}
	cmdStreamFile              = &command{name: "STREAM FILE", wait: open}
	cmdControlStreamFile       = &command{name: "CONTROL STREAM FILE", wait: open}
	cmdTDDMode                 = &command{name: "TDD MODE"}
	cmdVerbose                 = &command{name: "VERBOSE"}
	cmdWaitForDigit            = &command{name: "WAIT FOR DIGIT", wait: argMillis, arg: 0}
	cmdSpeechCreate            = &command{name: "SPEECH CREATE"}
	cmdSpeechSet               = &command{name: "SPEECH SET"}
	cmdSpeechDestroy           = &command{name: "SPEECH DESTROY"}
	cmdSpeechLoadGrammar       = &command{name: "SPEECH LOAD GRAMMAR"}
	cmdSpeechUnloadGrammar     = &command{name: "SPEECH UNLOAD GRAMMAR"}
	cmdSpeechActivateGrammar   = &command{name: "SPEECH ACTIVATE GRAMMAR"}
	cmdSpeechDeactivateGrammar = &command{name: "SPEECH DEACTIVATE GRAMMAR"}
	cmdSpeechRecognize         = &command{name: "SPEECH RECOGNIZE", wait: open}
	cmdGosub                   = &command{name: "GOSUB", wait: open}
)

// commands lists them for Command, which is given a command by name.
var commands = []*command{
	cmdAnswer, cmdAsyncAGIBreak, cmdChannelStatus, cmdDatabaseDel, cmdDatabaseDelTree,
	cmdDatabaseGet, cmdDatabasePut, cmdExec, cmdGetData, cmdGetFullVariable, cmdGetOption,
	cmdGetVariable, cmdHangup, cmdNoop, cmdReceiveChar, cmdReceiveText, cmdRecordFile,
	cmdSayAlpha, cmdSayDigits, cmdSayNumber, cmdSayPhonetic, cmdSayDate, cmdSayTime,
	cmdSayDateTime, cmdSendImage, cmdSendText, cmdSetAutoHangup, cmdSetCallerID,
	cmdSetContext, cmdSetExtension, cmdSetMusic, cmdSetPriority, cmdSetVariable,
	cmdStreamFile, cmdControlStreamFile, cmdTDDMode, cmdVerbose, cmdWaitForDigit,
	cmdSpeechCreate, cmdSpeechSet, cmdSpeechDestroy, cmdSpeechLoadGrammar,
	cmdSpeechUnloadGrammar, cmdSpeechActivateGrammar, cmdSpeechDeactivateGrammar,
	cmdSpeechRecognize, cmdGosub,
}

// unknownCommand is any other: Asterisk answers 510 at once to what it does
// not know, but a command added by a module may take any time.
var unknownCommand = &command{wait: open}

// lookupCommand finds the command a line starts with, Asterisk's way:
// words compared without regard to case, the longest name first. rest is
// what follows the name.
func lookupCommand(line string) (c *command, rest string) {
	var best *command
	for _, k := range commands {
		if len(line) < len(k.name) || !strings.EqualFold(line[:len(k.name)], k.name) {
			continue
		}
		if len(line) > len(k.name) && line[len(k.name)] != ' ' {
			continue
		}
		if best == nil || len(k.name) > len(best.name) {
			best = k
		}
	}
	if best == nil {
		return unknownCommand, ""
	}
	return best, line[len(best.name):]
}

// bound returns how long the reply to c may take beyond ReadTimeout, given
// its arguments; ok is false when nothing but the caller's context and the
// session's deadline bound it.
func (c *command) bound(args []string) (extra time.Duration, ok bool) {
	switch c.wait {
	case atOnce:
		return 0, true
	case argMillis:
		if c.arg >= len(args) {
			// Asterisk answers 520 at once.
			return 0, true
		}
		ms, err := strconv.ParseInt(strings.TrimSpace(args[c.arg]), 10, 32)
		switch {
		case err != nil:
			// Asterisk reads a number or answers 520, at once.
			return 0, true
		case ms < 0:
			return 0, false
		}
		return time.Duration(ms) * time.Millisecond, true
	}
	return 0, false
}

// lineArgs splits what follows a command's name in a line given whole to
// Command into its arguments, as Asterisk's parser does for the simple
// forms (words, and words in double quotes).
func lineArgs(rest string) []string {
	var args []string
	for rest = strings.TrimLeft(rest, " "); rest != ""; rest = strings.TrimLeft(rest, " ") {
		var arg string
		if rest[0] == '"' {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				return append(args, rest[1:])
			}
			arg, rest = rest[1:end+1], rest[end+2:]
		} else {
			arg, rest, _ = strings.Cut(rest, " ")
		}
		args = append(args, arg)
	}
	return args
}
