package agi_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// commandCase is one typed method, the line it must send, what Asterisk 22
// answers (the forms of res_agi.c), and what the method must make of it.
type commandCase struct {
	command string // the command covered, as "agi show commands" lists it
	name    string
	run     func(ctx context.Context, s *agi.Session) (any, error)
	sent    string
	replies []string
	want    any
	wantErr error // matched with errors.Is; nil for success
}

// valueOk is a value and whether it was set, as the variable and database
// readers return them.
type valueOk struct {
	Value string
	OK    bool
}

// digits is GetData's result.
type digits struct {
	Digits   string
	TimedOut bool
}

var at = time.Unix(1210498014, 0)

var commandCases = []commandCase{
	{command: "answer", name: "Answer", sent: `ANSWER`, replies: []string{"200 result=0"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.Answer(ctx) }},
	{command: "answer", name: "AnswerFailed", sent: `ANSWER`, replies: []string{"200 result=-1"}, wantErr: agi.ErrFailed,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.Answer(ctx) }},
	{command: "asyncagi break", name: "AsyncAGIBreak", sent: `ASYNCAGI BREAK`, replies: []string{"200 result=0"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.AsyncAGIBreak(ctx) }},
	{command: "channel status", name: "ChannelStatus", sent: `CHANNEL STATUS`, replies: []string{"200 result=4"}, want: agi.StateRing,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.ChannelStatus(ctx) }},
	{command: "channel status", name: "ChannelStatusOfNone", sent: `CHANNEL STATUS "PJSIP/nobody-00000001"`, replies: []string{"200 result=-1"}, wantErr: agi.ErrFailed, want: agi.StateDown,
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.ChannelStatusOf(ctx, "PJSIP/nobody-00000001")
		}},
	{command: "database del", name: "DatabaseDel", sent: `DATABASE DEL "secret" "fastagitest"`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.DatabaseDel(ctx, "secret", "fastagitest")
		}},
	{command: "database del", name: "DatabaseDelRejected", sent: `DATABASE DEL "secret" "k"`, replies: []string{"200 result=0"}, wantErr: agi.ErrRejected,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.DatabaseDel(ctx, "secret", "k") }},
	{command: "database deltree", name: "DatabaseDelTree", sent: `DATABASE DELTREE "ivr"`, replies: []string{"200 result=0"}, want: true,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.DatabaseDelTree(ctx, "ivr", "") }},
	{command: "database deltree", name: "DatabaseDelTreeEmpty", sent: `DATABASE DELTREE "ivr" "menu"`, replies: []string{"200 result=1"}, want: false,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.DatabaseDelTree(ctx, "ivr", "menu") }},
	{command: "database get", name: "DatabaseGet", sent: `DATABASE GET "secret" "fastagitest"`, replies: []string{"200 result=1 (just started)"}, want: valueOk{"just started", true},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			v, ok, err := s.DatabaseGet(ctx, "secret", "fastagitest")
			return valueOk{v, ok}, err
		}},
	{command: "database get", name: "DatabaseGetMissing", sent: `DATABASE GET "secret" "none"`, replies: []string{"200 result=0"}, want: valueOk{},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			v, ok, err := s.DatabaseGet(ctx, "secret", "none")
			return valueOk{v, ok}, err
		}},
	{command: "database put", name: "DatabasePut", sent: `DATABASE PUT "secret" "fastagitest" "halfway done"`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.DatabasePut(ctx, "secret", "fastagitest", "halfway done")
		}},
	{command: "database put", name: "DatabasePutRejected", sent: `DATABASE PUT "secret" "k" "v"`, replies: []string{"200 result=0"}, wantErr: agi.ErrRejected,
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.DatabasePut(ctx, "secret", "k", "v")
		}},
	{command: "exec", name: "Exec", sent: `EXEC "Set" "LAMB=sure to go"`, replies: []string{"200 result=0"}, want: 0,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.Exec(ctx, "Set", "LAMB=sure to go") }},
	{command: "exec", name: "ExecNoApplication", sent: `EXEC "Frobnicate" ""`, replies: []string{"200 result=-2"}, want: -2, wantErr: agi.ErrNoApplication,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.Exec(ctx, "Frobnicate", "") }},
	{command: "exec", name: "ExecHungUp", sent: `EXEC "Wait" "10"`, replies: []string{"200 result=-1"}, want: -1, wantErr: agi.ErrFailed,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.Exec(ctx, "Wait", "10") }},
	{command: "get data", name: "GetData", sent: `GET DATA "beep" "10000" "10"`, replies: []string{"200 result=3212333"}, want: digits{"3212333", false},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			d, to, err := s.GetData(ctx, "beep", 10*time.Second, 10)
			return digits{d, to}, err
		}},
	{command: "get data", name: "GetDataTimeout", sent: `GET DATA "beep"`, replies: []string{"200 result=12 (timeout)"}, want: digits{"12", true},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			d, to, err := s.GetData(ctx, "beep", 0, 0)
			return digits{d, to}, err
		}},
	{command: "get data", name: "GetDataNothing", sent: `GET DATA "beep" "0" "4"`, replies: []string{"200 result= (timeout)"}, want: digits{"", true},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			d, to, err := s.GetData(ctx, "beep", 0, 4)
			return digits{d, to}, err
		}},
	{command: "get data", name: "GetDataHangup", sent: `GET DATA "beep" "2000"`, replies: []string{"200 result=-1"}, want: digits{}, wantErr: agi.ErrFailed,
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			d, to, err := s.GetData(ctx, "beep", 2*time.Second, 0)
			return digits{d, to}, err
		}},
	{command: "get full variable", name: "GetFullVariable", sent: `GET FULL VARIABLE "${CALLERID(num)}-${EXTEN}"`, replies: []string{"200 result=1 (100-s (x))"}, want: valueOk{"100-s (x)", true},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			v, ok, err := s.GetFullVariable(ctx, "${CALLERID(num)}-${EXTEN}")
			return valueOk{v, ok}, err
		}},
	{command: "get full variable", name: "GetFullVariableOfNone", sent: `GET FULL VARIABLE "${EXTEN}" "PJSIP/nobody"`, replies: []string{"200 result=0"}, want: valueOk{},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			v, ok, err := s.GetFullVariableOf(ctx, "PJSIP/nobody", "${EXTEN}")
			return valueOk{v, ok}, err
		}},
	{command: "get option", name: "GetOption", sent: `GET OPTION "beep" "12" "2000"`, replies: []string{"200 result=50 endpos=1600"}, want: agi.Playback{Digit: '2', EndPos: 1600},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.GetOption(ctx, "beep", "12", 2*time.Second)
		}},
	{command: "get option", name: "GetOptionMissingFile", sent: `GET OPTION "no-such-prompt" ""`, replies: []string{"200 result=-1 endpos=0"}, want: agi.Playback{}, wantErr: agi.ErrFailed,
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.GetOption(ctx, "no-such-prompt", "", 0)
		}},
	{command: "get variable", name: "GetVariable", sent: `GET VARIABLE "CHANNEL(linkedid)"`, replies: []string{"200 result=1 (1795524649.1)"}, want: valueOk{"1795524649.1", true},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			v, ok, err := s.GetVariable(ctx, "CHANNEL(linkedid)")
			return valueOk{v, ok}, err
		}},
	{command: "hangup", name: "Hangup", sent: `HANGUP`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.Hangup(ctx) }},
	{command: "hangup", name: "HangupChannelNone", sent: `HANGUP "PJSIP/nobody"`, replies: []string{"200 result=-1"}, wantErr: agi.ErrFailed,
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.HangupChannel(ctx, "PJSIP/nobody")
		}},
	{command: "noop", name: "Noop", sent: `NOOP`, replies: []string{"200 result=0"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.Noop(ctx) }},
	{command: "receive char", name: "ReceiveChar", sent: `RECEIVE CHAR "1000"`, replies: []string{"200 result=65"}, want: 'A',
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.ReceiveChar(ctx, time.Second) }},
	{command: "receive char", name: "ReceiveCharNone", sent: `RECEIVE CHAR "0"`, replies: []string{"200 result=0 (timeout)"}, want: rune(0),
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.ReceiveChar(ctx, 0) }},
	// Asterisk waits for ever on a negative timeout, returns at once on 0.
	{command: "receive char", name: "ReceiveCharForever", sent: `RECEIVE CHAR "-1"`, replies: []string{"200 result=66"}, want: 'B',
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.ReceiveChar(ctx, -1) }},
	{command: "receive text", name: "ReceiveTextForever", sent: `RECEIVE TEXT "-1"`, replies: []string{"200 result=1 (hi)"}, want: "hi",
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.ReceiveText(ctx, -time.Second) }},
	{command: "receive text", name: "ReceiveText", sent: `RECEIVE TEXT "3000"`, replies: []string{"200 result=1 (hello (there))"}, want: "hello (there)",
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.ReceiveText(ctx, 3*time.Second) }},
	{command: "receive text", name: "ReceiveTextNone", sent: `RECEIVE TEXT "3000"`, replies: []string{"200 result=-1"}, want: "", wantErr: agi.ErrFailed,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.ReceiveText(ctx, 3*time.Second) }},
	{command: "record file", name: "RecordFile", sent: `RECORD FILE "/tmp/talking" "ulaw" "#" "3000" "BEEP" "s=2"`, replies: []string{"200 result=35 (dtmf) endpos=8000"},
		want: agi.Recording{Digit: '#', EndPos: 8000, Ended: "dtmf"},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.RecordFile(ctx, "/tmp/talking", "ulaw", "#", 3*time.Second, agi.RecordOptions{Beep: true, Silence: 1500 * time.Millisecond})
		}},
	{command: "record file", name: "RecordFileAppend", sent: `RECORD FILE "msg" "wav" "" "30000" "16000"`, replies: []string{"200 result=0 (timeout) endpos=24000"},
		want: agi.Recording{EndPos: 24000, Ended: "timeout"},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.RecordFile(ctx, "msg", "wav", "", 30*time.Second, agi.RecordOptions{Offset: 16000})
		}},
	{command: "record file", name: "RecordFileHangup", sent: `RECORD FILE "msg" "wav" "#" "20000"`, replies: []string{"200 result=-1 (hangup) endpos=2400"},
		want: agi.Recording{EndPos: 2400, Ended: "hangup"}, wantErr: agi.ErrFailed,
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.RecordFile(ctx, "msg", "wav", "#", 20*time.Second, agi.RecordOptions{})
		}},
	{command: "say alpha", name: "SayAlpha", sent: `SAY ALPHA "respect" ""`, replies: []string{"200 result=0"}, want: rune(0),
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.SayAlpha(ctx, "respect", "") }},
	{command: "say digits", name: "SayDigits", sent: `SAY DIGITS "31337" "#*"`, replies: []string{"200 result=35"}, want: '#',
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.SayDigits(ctx, "31337", "#*") }},
	{command: "say number", name: "SayNumber", sent: `SAY NUMBER "2345" ""`, replies: []string{"200 result=0"}, want: rune(0),
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.SayNumber(ctx, 2345, "") }},
	{command: "say phonetic", name: "SayPhonetic", sent: `SAY PHONETIC "cat" ""`, replies: []string{"200 result=0"}, want: rune(0),
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.SayPhonetic(ctx, "cat", "") }},
	{command: "say date", name: "SayDate", sent: `SAY DATE "1210498014" ""`, replies: []string{"200 result=0"}, want: rune(0),
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.SayDate(ctx, at, "") }},
	{command: "say time", name: "SayTimeHangup", sent: `SAY TIME "1210498014" ""`, replies: []string{"200 result=-1"}, want: rune(0), wantErr: agi.ErrFailed,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.SayTime(ctx, at, "") }},
	{command: "say datetime", name: "SayDateTime", sent: `SAY DATETIME "1210498014" ""`, replies: []string{"200 result=0"}, want: rune(0),
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.SayDateTime(ctx, at, "", "", "") }},
	{command: "say datetime", name: "SayDateTimeZone", sent: `SAY DATETIME "1210498014" "#" "IMp" "America/Sao_Paulo"`, replies: []string{"200 result=0"}, want: rune(0),
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.SayDateTime(ctx, at, "#", "IMp", "America/Sao_Paulo")
		}},
	{command: "send image", name: "SendImage", sent: `SEND IMAGE "logo"`, replies: []string{"200 result=0"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SendImage(ctx, "logo") }},
	{command: "send text", name: "SendText", sent: `SEND TEXT "hello \"you\""`, replies: []string{"200 result=0"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SendText(ctx, `hello "you"`) }},
	{command: "send text", name: "SendTextFailed", sent: `SEND TEXT "x"`, replies: []string{"200 result=-1"}, wantErr: agi.ErrFailed,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SendText(ctx, "x") }},
	{command: "set autohangup", name: "SetAutoHangup", sent: `SET AUTOHANGUP "1.5"`, replies: []string{"200 result=0"},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.SetAutoHangup(ctx, 1500*time.Millisecond)
		}},
	{command: "set callerid", name: "SetCallerID", sent: `SET CALLERID "\"Ana\" <100>"`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SetCallerID(ctx, `"Ana" <100>`) }},
	{command: "set context", name: "SetContext", sent: `SET CONTEXT "ivr"`, replies: []string{"200 result=0"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SetContext(ctx, "ivr") }},
	{command: "set extension", name: "SetExtension", sent: `SET EXTENSION "s"`, replies: []string{"200 result=0"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SetExtension(ctx, "s") }},
	{command: "set music", name: "SetMusicOn", sent: `SET MUSIC "on" "jazz"`, replies: []string{"200 result=0"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SetMusic(ctx, true, "jazz") }},
	{command: "set music", name: "SetMusicOff", sent: `SET MUSIC "off"`, replies: []string{"200 result=0"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SetMusic(ctx, false, "jazz") }},
	{command: "set priority", name: "SetPriority", sent: `SET PRIORITY "2"`, replies: []string{"200 result=0"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SetPriority(ctx, "2") }},
	{command: "set priority", name: "SetPriorityNoLabel", sent: `SET PRIORITY "nolabel"`, replies: []string{
		"520-Invalid command syntax.  Proper usage follows:",
		"Usage: SET PRIORITY <priority>",
		"520 End of proper usage."}, wantErr: agi.ErrSyntax,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SetPriority(ctx, "nolabel") }},
	{command: "set variable", name: "SetVariable", sent: `SET VARIABLE "X" "a \"b\" c\\d"`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.SetVariable(ctx, "X", `a "b" c\d`)
		}},
	{command: "stream file", name: "StreamFile", sent: `STREAM FILE "beep" ""`, replies: []string{"200 result=0 endpos=1600"}, want: agi.Playback{EndPos: 1600},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.StreamFile(ctx, "beep", "", 0) }},
	{command: "stream file", name: "StreamFileFrom", sent: `STREAM FILE "demo-congrats" "#" "8000"`, replies: []string{"200 result=35 endpos=20000"}, want: agi.Playback{Digit: '#', EndPos: 20000},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.StreamFile(ctx, "demo-congrats", "#", 8000)
		}},
	{command: "stream file", name: "StreamFileHangup", sent: `STREAM FILE "demo-congrats" ""`, replies: []string{"200 result=-1 endpos=4480"}, want: agi.Playback{EndPos: 4480}, wantErr: agi.ErrFailed,
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.StreamFile(ctx, "demo-congrats", "", 0)
		}},
	{command: "stream file", name: "StreamFileDeadChannel", sent: `STREAM FILE "beep" ""`, replies: []string{"511 Command Not Permitted on a dead channel or intercept routine"}, want: agi.Playback{}, wantErr: agi.ErrDeadChannel,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.StreamFile(ctx, "beep", "", 0) }},
	{command: "control stream file", name: "ControlStreamFile", sent: `CONTROL STREAM FILE "beep" ""`, replies: []string{"200 result=0 endpos=260"}, want: agi.Playback{EndPos: 260},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.ControlStreamFile(ctx, "beep", "", agi.ControlOptions{})
		}},
	{command: "control stream file", name: "ControlStreamFileOptions", sent: `CONTROL STREAM FILE "demo-congrats" "0" "3000" "" "" "5" "1500"`, replies: []string{"200 result=48 endpos=4000"},
		want: agi.Playback{Digit: '0', EndPos: 4000},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.ControlStreamFile(ctx, "demo-congrats", "0", agi.ControlOptions{Pause: "5", Offset: 1500 * time.Millisecond})
		}},
	{command: "tdd mode", name: "TDDModeUnsupported", sent: `TDD MODE "on"`, replies: []string{"200 result=0"}, wantErr: agi.ErrRejected,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.TDDMode(ctx, "on") }},
	{command: "verbose", name: "Verbose", sent: `VERBOSE "hello" "1"`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.Verbose(ctx, "hello", 1) }},
	{command: "wait for digit", name: "WaitForDigit", sent: `WAIT FOR DIGIT "60000"`, replies: []string{"200 result=51"}, want: '3',
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.WaitForDigit(ctx, time.Minute) }},
	{command: "wait for digit", name: "WaitForDigitForever", sent: `WAIT FOR DIGIT "-1"`, replies: []string{"200 result=0"}, want: rune(0),
		run: func(ctx context.Context, s *agi.Session) (any, error) { return s.WaitForDigit(ctx, -1) }},
	{command: "speech create", name: "SpeechCreate", sent: `SPEECH CREATE "lumenvox"`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SpeechCreate(ctx, "lumenvox") }},
	{command: "speech create", name: "SpeechCreateNoEngine", sent: `SPEECH CREATE "nosuch"`, replies: []string{"200 result=0"}, wantErr: agi.ErrRejected,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SpeechCreate(ctx, "nosuch") }},
	{command: "speech set", name: "SpeechSet", sent: `SPEECH SET "confidence" "500"`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.SpeechSet(ctx, "confidence", "500")
		}},
	{command: "speech destroy", name: "SpeechDestroy", sent: `SPEECH DESTROY`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.SpeechDestroy(ctx) }},
	{command: "speech load grammar", name: "SpeechLoadGrammar", sent: `SPEECH LOAD GRAMMAR "yesno" "/grammars/yesno.gram"`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.SpeechLoadGrammar(ctx, "yesno", "/grammars/yesno.gram")
		}},
	{command: "speech unload grammar", name: "SpeechUnloadGrammar", sent: `SPEECH UNLOAD GRAMMAR "yesno"`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.SpeechUnloadGrammar(ctx, "yesno")
		}},
	{command: "speech activate grammar", name: "SpeechActivateGrammar", sent: `SPEECH ACTIVATE GRAMMAR "yesno"`, replies: []string{"200 result=1"},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.SpeechActivateGrammar(ctx, "yesno")
		}},
	{command: "speech deactivate grammar", name: "SpeechDeactivateGrammarNoObject", sent: `SPEECH DEACTIVATE GRAMMAR "yesno"`, replies: []string{"200 result=0"}, wantErr: agi.ErrRejected,
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.SpeechDeactivateGrammar(ctx, "yesno")
		}},
	{command: "speech recognize", name: "SpeechRecognize", sent: `SPEECH RECOGNIZE "menu" "5"`,
		replies: []string{`200 result=1 (speech) endpos=0 results=2 score0=900 text0="yes (sure) "indeed"" grammar0=yesno score1=120 text1="no" grammar1=yesno`},
		want:    agi.SpeechResult{Reason: "speech", Matches: []agi.SpeechMatch{{Score: 900, Text: `yes (sure) "indeed"`, Grammar: "yesno"}, {Score: 120, Text: "no", Grammar: "yesno"}}},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.SpeechRecognize(ctx, "menu", 4500*time.Millisecond, 0)
		}},
	{command: "speech recognize", name: "SpeechRecognizeDigit", sent: `SPEECH RECOGNIZE "menu" "0" "800"`, replies: []string{"200 result=1 (digit) digit=5 endpos=1200"},
		want: agi.SpeechResult{Reason: "digit", Digit: '5', EndPos: 1200},
		run:  func(ctx context.Context, s *agi.Session) (any, error) { return s.SpeechRecognize(ctx, "menu", 0, 800) }},
	{command: "speech recognize", name: "SpeechRecognizeNoObject", sent: `SPEECH RECOGNIZE "menu" "5"`, replies: []string{"200 result=0"}, want: agi.SpeechResult{}, wantErr: agi.ErrRejected,
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return s.SpeechRecognize(ctx, "menu", 5*time.Second, 0)
		}},
	{command: "gosub", name: "Gosub", sent: `GOSUB "sub-menu" "s" "1" "a,b c"`, replies: []string{"100 result=0 Trying...", "200 result=0 Gosub complete"},
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.Gosub(ctx, "sub-menu", "s", "1", "a", "b c")
		}},
	{command: "gosub", name: "GosubNoReturn", sent: `GOSUB "sub-menu" "s" "1"`, replies: []string{"100 result=0 Trying...", "200 result=0 Gosub complete (abnormal exit)"}, wantErr: agi.ErrNoReturn,
		run: func(ctx context.Context, s *agi.Session) (any, error) { return nil, s.Gosub(ctx, "sub-menu", "s", "1") }},
	{command: "gosub", name: "GosubNoLabel", sent: `GOSUB "sub-menu" "s" "nolabel"`, replies: []string{"200 result=-1 Gosub label not found"}, wantErr: agi.ErrFailed,
		run: func(ctx context.Context, s *agi.Session) (any, error) {
			return nil, s.Gosub(ctx, "sub-menu", "s", "nolabel")
		}},
}

// TestTypedCommands runs each typed method against Asterisk's replies.
func TestTypedCommands(t *testing.T) {
	for _, c := range commandCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if !strings.HasPrefix(c.sent, strings.ToUpper(c.command)) {
				t.Fatalf("the case for %q sends %q", c.command, c.sent)
			}
			type result struct {
				v   any
				err error
			}
			results := make(chan result, 1)
			srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
				v, err := c.run(context.Background(), s)
				results <- result{v, err}
			})}
			p := dial(t, start(t, srv))
			p.send(envFor("x"))
			p.expect(c.sent)
			p.send(strings.Join(c.replies, "\n") + "\n")
			r := testutil.Receive(t, results, "the method's result")
			if c.wantErr == nil && r.err != nil {
				t.Fatalf("error %v", r.err)
			}
			if c.wantErr != nil && !errors.Is(r.err, c.wantErr) {
				t.Fatalf("error %v; want %v", r.err, c.wantErr)
			}
			if diff := cmp.Diff(c.want, r.v); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if r.err != nil && !strings.HasPrefix(r.err.Error(), "agi: "+strings.ToUpper(c.command)+": ") {
				t.Errorf("error %q does not name the command first", r.err)
			}
		})
	}
}

// TestEveryCommandTyped checks that every command Asterisk 22 lists has a
// typed method, with a case above, and that the session knows how long
// each may take.
func TestEveryCommandTyped(t *testing.T) {
	listed := asteriskCommands(t)
	if len(listed) < 40 {
		t.Fatalf("only %d commands read from agi show commands: %q", len(listed), listed)
	}
	covered := map[string]bool{}
	for _, c := range commandCases {
		covered[c.command] = true
	}
	known := map[string]bool{}
	for _, n := range agi.KnownCommands() {
		known[strings.ToLower(n)] = true
	}
	for _, name := range listed {
		if !covered[name] {
			t.Errorf("%q: no typed method case", name)
		}
		if !known[name] {
			t.Errorf("%q: the session does not know it", name)
		}
	}
	for name := range known {
		if !slices.Contains(listed, name) {
			t.Errorf("%q: known to the session, but Asterisk 22 does not list it", name)
		}
	}
}

// asteriskCommands reads the command names of "agi show commands", as the
// real-Asterisk suite recorded it.
func asteriskCommands(t testing.TB) []string {
	t.Helper()
	var names []string
	for _, l := range strings.Split(string(readFile(t, "testdata/asterisk22/agi-show-commands.txt")), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || (f[0] != "Yes" && f[0] != "No") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(strings.TrimSpace(l)[len(f[0]):], " "), "   ")
		names = append(names, strings.TrimSpace(name))
	}
	return names
}

// TestTypedArgumentsRefused checks that arguments Asterisk would refuse or
// misread are refused before anything is sent, naming what is wrong, and
// that the session goes on.
func TestTypedArgumentsRefused(t *testing.T) {
	cases := []struct {
		name string
		run  func(ctx context.Context, s *agi.Session) error
		want string
	}{
		{"SayDigitsNotDigits", func(ctx context.Context, s *agi.Session) error { _, err := s.SayDigits(ctx, "12a", ""); return err },
			`agi: SAY DIGITS: digits "12a": want 0-9 only`},
		{"EscapeDigitsNotKeys", func(ctx context.Context, s *agi.Session) error {
			_, err := s.StreamFile(ctx, "beep", "1x", 0)
			return err
		},
			`agi: STREAM FILE: keys "1x": want some of 0123456789*#ABCD`},
		{"NoFile", func(ctx context.Context, s *agi.Session) error { _, err := s.StreamFile(ctx, "", "", 0); return err },
			`agi: STREAM FILE: no file named`},
		{"MaxDigits", func(ctx context.Context, s *agi.Session) error {
			_, _, err := s.GetData(ctx, "beep", 0, 2000)
			return err
		},
			`agi: GET DATA: maxDigits 2000 is out of 1..1024`},
		{"ZoneWithoutFormat", func(ctx context.Context, s *agi.Session) error {
			_, err := s.SayDateTime(ctx, at, "", "", "UTC")
			return err
		}, `agi: SAY DATETIME: zone "UTC" needs a format: Asterisk reads an empty one as nothing to say`},
		{"NumberTooLarge", func(ctx context.Context, s *agi.Session) error {
			_, err := s.SayNumber(ctx, math.MaxInt32+1, "")
			return err
		},
			`agi: SAY NUMBER: 2147483648 is out of Asterisk's 32-bit range`},
		{"WaitTooLong", func(ctx context.Context, s *agi.Session) error {
			_, err := s.WaitForDigit(ctx, 1000*time.Hour)
			return err
		},
			`agi: WAIT FOR DIGIT: timeout 1000h0m0s is out of Asterisk's range`},
		{"TDDMode", func(ctx context.Context, s *agi.Session) error { return s.TDDMode(ctx, "maybe") },
			`agi: TDD MODE: mode "maybe": want on, off, tdd or mate`},
		{"DatabaseNoKey", func(ctx context.Context, s *agi.Session) error { return s.DatabasePut(ctx, "ivr", "", "x") },
			`agi: DATABASE PUT: family and key must not be empty`},
		{"RecordNegativeOffset", func(ctx context.Context, s *agi.Session) error {
			_, err := s.RecordFile(ctx, "x", "wav", "#", 0, agi.RecordOptions{Offset: -1})
			return err
		}, `agi: RECORD FILE: offset -1 is negative`},
		{"ExecNoApplication", func(ctx context.Context, s *agi.Session) error { _, err := s.Exec(ctx, "", "x"); return err },
			`agi: EXEC: no application named`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			errs := make(chan error, 2)
			srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
				errs <- c.run(context.Background(), s)
				errs <- s.Noop(context.Background())
			})}
			p := dial(t, start(t, srv))
			p.send(envFor("x"))
			p.expect("NOOP") // nothing sent before it
			p.send("200 result=0\n")
			if err := testutil.Receive(t, errs, "the method's error"); err == nil || err.Error() != c.want {
				t.Errorf("error %v; want %s", err, c.want)
			}
			if err := testutil.Receive(t, errs, "NOOP's error"); err != nil {
				t.Errorf("the session should go on: %v", err)
			}
		})
	}
}

// TestResultErrorText checks what a failed result reads like.
func TestResultErrorText(t *testing.T) {
	err := error(&agi.ResultError{Command: "STREAM FILE", Result: -1, Data: "hangup", Err: agi.ErrFailed})
	if got, want := err.Error(), "agi: STREAM FILE: result -1 (hangup): command failed"; got != want {
		t.Errorf("%q; want %q", got, want)
	}
	if got, want := fmt.Sprint(agi.StateUp, " ", agi.ChannelState(42)), "up state 42"; got != want {
		t.Errorf("%q; want %q", got, want)
	}
}

// Asterisk records on when the connection closes: RECORD FILE is sent with
// a timeout that ends it before the session's end and the caller's
// deadline, so that the call is never held past them.
func TestRecordFileStopsBeforeTheSessionEnds(t *testing.T) {
	for _, c := range []struct {
		name     string
		ctx      time.Duration // 0: none
		timeout  time.Duration
		min, max int // the timeout sent, in ms
	}{
		{"NoLimitWithinTheSession", 0, 0, 9000, 10000},
		{"LongerThanTheSession", 0, time.Hour, 9000, 10000},
		{"ShorterThanBoth", 5 * time.Second, 2 * time.Second, 2000, 2000},
		{"TheCallersDeadline", 3 * time.Second, time.Minute, 2000, 3000},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := &agi.Server{SessionTimeout: 10 * time.Second, Handler: agi.HandlerFunc(func(s *agi.Session) {
				ctx := context.Background()
				if c.ctx > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, c.ctx)
					defer cancel()
				}
				s.RecordFile(ctx, "msg", "wav", "#", c.timeout, agi.RecordOptions{})
			})}
			p := dial(t, start(t, srv))
			p.send(envFor("x"))
			line, err := p.r.ReadString('\n')
			if err != nil {
				t.Fatalf("peer: %v", err)
			}
			line = strings.TrimSuffix(line, "\n")
			var ms int
			if _, err := fmt.Sscanf(line, `RECORD FILE "msg" "wav" "#" "%d"`, &ms); err != nil || ms < c.min || ms > c.max {
				t.Errorf("sent %q; want a timeout of %d to %d ms", line, c.min, c.max)
			}
			p.send("200 result=0 (timeout) endpos=0\n")
		})
	}
}
