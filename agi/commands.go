package agi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The typed methods below send one AGI command each, as Asterisk 22 lists
// them ("agi show commands"), and read its reply into Go values. Each
// takes a context and is awaited as Command says: those that answer at
// once within the server's ReadTimeout, those that wait for a time their
// arguments give within that time plus ReadTimeout, those that play a
// sound or run something until ctx or the session ends.
//
// Errors: a reply other than 200 is a *CommandError (errors.Is matches
// ErrInvalidCommand, ErrDeadChannel, ErrSyntax); a 200 reply whose result
// says the command did not do its work is a *ResultError (ErrFailed for
// -1, ErrRejected for 0 where 1 is success, ErrNoApplication for EXEC's
// -2). Arguments Asterisk would refuse or misread are refused before
// anything is sent, with an error naming them; the session stays open.

// ErrNoReturn is GOSUB's "abnormal exit": the subroutine ended without
// Return (the channel hung up in it, or it jumped elsewhere).
var ErrNoReturn = errors.New("agi: the subroutine did not return")

// ChannelState is a channel's state, as CHANNEL STATUS reports it
// (Asterisk's enum ast_channel_state).
type ChannelState int

const (
	StateDown           ChannelState = iota // down and available
	StateReserved                           // down, but reserved
	StateOffHook                            // off hook
	StateDialing                            // digits (or equivalent) have been dialled
	StateRing                               // the line is ringing: a call in, not answered yet
	StateRinging                            // the remote end is ringing
	StateUp                                 // up: answered
	StateBusy                               // busy
	StateDialingOffHook                     // digits dialled while off hook
	StatePreRing                            // channel has detected an incoming call and is waiting for ring
)

var stateNames = [...]string{"down", "reserved", "off hook", "dialing", "ring", "ringing", "up", "busy", "dialing off hook", "pre-ring"}

func (c ChannelState) String() string {
	if c >= 0 && int(c) < len(stateNames) {
		return stateNames[c]
	}
	return "state " + strconv.Itoa(int(c))
}

// Playback is how a command that played a file ended.
type Playback struct {
	// Digit is the key that stopped it, 0 if none did.
	Digit rune
	// EndPos is where it stopped: in samples (8000 a second for most
	// prompts), but in milliseconds for ControlStreamFile.
	EndPos int64
}

// Recording is how RECORD FILE ended.
type Recording struct {
	Digit  rune   // the escape key that ended it, 0 if none did
	EndPos int64  // the samples recorded (8000 a second for most formats)
	Ended  string // Asterisk's word for why: "dtmf", "timeout" (the time limit or the silence), "hangup", ...
}

// RecordOptions are RECORD FILE's optional arguments.
type RecordOptions struct {
	Offset  int64         // samples to skip into an existing file before recording; 0 records from the start
	Beep    bool          // play a beep first
	Silence time.Duration // stop after this much silence (whole seconds); 0 does not
}

// ControlOptions are CONTROL STREAM FILE's optional arguments; the zero
// value is Asterisk's defaults.
type ControlOptions struct {
	Skip    time.Duration // how far a forward or rewind key moves (0 = 3s)
	Forward string        // the fast-forward key ("" = "#")
	Rewind  string        // the rewind key ("" = "*")
	Pause   string        // the pause key ("" = none)
	Offset  time.Duration // where to start
}

// SpeechResult is how SPEECH RECOGNIZE ended.
type SpeechResult struct {
	Reason  string // "speech", "digit", "timeout" or "hangup"
	Digit   rune   // for "digit": the key pressed
	EndPos  int64  // where the prompt stopped, in samples
	Matches []SpeechMatch
}

// SpeechMatch is one of the speech engine's results.
type SpeechMatch struct {
	Score   int
	Text    string
	Grammar string
}

// Answer answers the channel (nothing happens if it is up already).
func (s *Session) Answer(ctx context.Context) error {
	_, err := s.want(ctx, cmdAnswer, 0)
	return err
}

// AsyncAGIBreak ends an Async AGI session. Over FastAGI, Asterisk only
// acknowledges it.
func (s *Session) AsyncAGIBreak(ctx context.Context) error {
	_, err := s.want(ctx, cmdAsyncAGIBreak, 0)
	return err
}

// ChannelStatus returns the state of the session's channel.
func (s *Session) ChannelStatus(ctx context.Context) (ChannelState, error) {
	return s.channelStatus(ctx)
}

// ChannelStatusOf returns the state of the named channel ("PJSIP/5252-00000001");
// a channel that does not exist is an ErrFailed.
func (s *Session) ChannelStatusOf(ctx context.Context, channel string) (ChannelState, error) {
	if channel == "" {
		return 0, argErr(cmdChannelStatus, "no channel named")
	}
	return s.channelStatus(ctx, channel)
}

func (s *Session) channelStatus(ctx context.Context, args ...string) (ChannelState, error) {
	r, n, err := s.result(ctx, cmdChannelStatus, args...)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, failed(cmdChannelStatus, r, n, ErrFailed)
	}
	return ChannelState(n), nil
}

// DatabaseGet reads family/key from Asterisk's database; ok is false when
// the key does not exist.
func (s *Session) DatabaseGet(ctx context.Context, family, key string) (value string, ok bool, err error) {
	if family == "" || key == "" {
		return "", false, argErr(cmdDatabaseGet, "family and key must not be empty")
	}
	return s.value(ctx, cmdDatabaseGet, family, key)
}

// DatabasePut writes family/key; a write Asterisk could not make is an
// ErrRejected.
func (s *Session) DatabasePut(ctx context.Context, family, key, value string) error {
	if family == "" || key == "" {
		return argErr(cmdDatabasePut, "family and key must not be empty")
	}
	_, err := s.want(ctx, cmdDatabasePut, 1, family, key, value)
	return err
}

// DatabaseDel deletes family/key. Asterisk 22 answers alike whether the
// key existed or not; a deletion it could not make is an ErrRejected.
func (s *Session) DatabaseDel(ctx context.Context, family, key string) error {
	if family == "" || key == "" {
		return argErr(cmdDatabaseDel, "family and key must not be empty")
	}
	_, err := s.want(ctx, cmdDatabaseDel, 1, family, key)
	return err
}

// DatabaseDelTree deletes every key of family under keytree ("" for the
// whole family), and says whether there were any.
//
// Asterisk 22 answers result=0 when it deleted keys and result=1 when
// there were none, the other way round from its documentation; this is
// read as it really answers.
func (s *Session) DatabaseDelTree(ctx context.Context, family, keytree string) (deleted bool, err error) {
	if family == "" {
		return false, argErr(cmdDatabaseDelTree, "no family named")
	}
	args := []string{family}
	if keytree != "" {
		args = append(args, keytree)
	}
	r, n, err := s.result(ctx, cmdDatabaseDelTree, args...)
	if err != nil {
		return false, err
	}
	switch n {
	case 0:
		return true, nil
	case 1:
		return false, nil
	}
	return false, unexpected(cmdDatabaseDelTree, r)
}

// Exec runs a dialplan application with its options as the dialplan
// writes them ("PJSIP/5252,30,tT"), and returns what it returned: 0 for
// most that worked. An application Asterisk does not have is an
// ErrNoApplication, one that returned -1 (usually: the channel hung up)
// an ErrFailed. Asterisk expands ${...} in options only if the channel
// variable AGIEXECFULL is yes.
func (s *Session) Exec(ctx context.Context, app, options string) (int, error) {
	if app == "" {
		return 0, argErr(cmdExec, "no application named")
	}
	r, n, err := s.result(ctx, cmdExec, app, options)
	if err != nil {
		return 0, err
	}
	switch {
	case n == -2:
		return n, failed(cmdExec, r, n, ErrNoApplication)
	case n < 0:
		return n, failed(cmdExec, r, n, ErrFailed)
	}
	return n, nil
}

// GetData plays file and collects up to maxDigits keys (0: Asterisk's
// limit, 1024), ended by '#' or by timeout between keys (0: the channel's
// default, 5s). timedOut tells that it ended by the timeout rather than by
// '#' or maxDigits; digits are those pressed until then, maybe none.
func (s *Session) GetData(ctx context.Context, file string, timeout time.Duration, maxDigits int) (digits string, timedOut bool, err error) {
	if file == "" {
		return "", false, argErr(cmdGetData, "no file named")
	}
	args := []string{file}
	if timeout != 0 || maxDigits != 0 {
		ms, err := millis(cmdGetData, "timeout", timeout)
		if err != nil {
			return "", false, err
		}
		if timeout < 0 {
			return "", false, argErr(cmdGetData, "timeout %s is negative", timeout)
		}
		args = append(args, ms)
	}
	if maxDigits != 0 {
		if maxDigits < 0 || maxDigits > 1024 {
			return "", false, argErr(cmdGetData, "maxDigits %d is out of 1..1024", maxDigits)
		}
		args = append(args, strconv.Itoa(maxDigits))
	}
	r, err := s.run(ctx, cmdGetData, args...)
	if err != nil {
		return "", false, err
	}
	if r.Result == "-1" {
		return "", false, failed(cmdGetData, r, -1, ErrFailed)
	}
	if !isKeys(r.Result) {
		return "", false, unexpected(cmdGetData, r)
	}
	return r.Result, r.HasData && r.Data == "timeout", nil
}

// GetFullVariable evaluates expr, which may hold ${...} expressions, on the
// channel. ok is false only if Asterisk could not evaluate it; an
// expression that is empty reads "" with ok true.
func (s *Session) GetFullVariable(ctx context.Context, expr string) (value string, ok bool, err error) {
	return s.value(ctx, cmdGetFullVariable, expr)
}

// GetFullVariableOf evaluates expr on the named channel; ok is false when
// there is no such channel.
func (s *Session) GetFullVariableOf(ctx context.Context, channel, expr string) (value string, ok bool, err error) {
	if channel == "" {
		return "", false, argErr(cmdGetFullVariable, "no channel named")
	}
	return s.value(ctx, cmdGetFullVariable, expr, channel)
}

// GetOption plays file, stoppable by any of escapeDigits, then waits up to
// timeout (0: the channel's default, 5s) for one of them.
func (s *Session) GetOption(ctx context.Context, file, escapeDigits string, timeout time.Duration) (Playback, error) {
	if file == "" {
		return Playback{}, argErr(cmdGetOption, "no file named")
	}
	if err := checkKeys(cmdGetOption, escapeDigits); err != nil {
		return Playback{}, err
	}
	args := []string{file, escapeDigits}
	if timeout != 0 {
		if timeout < 0 {
			return Playback{}, argErr(cmdGetOption, "timeout %s is negative", timeout)
		}
		ms, err := millis(cmdGetOption, "timeout", timeout)
		if err != nil {
			return Playback{}, err
		}
		args = append(args, ms)
	}
	return s.playback(ctx, cmdGetOption, args...)
}

// GetVariable returns the value of a channel variable or function; ok is
// false when it is unset.
func (s *Session) GetVariable(ctx context.Context, name string) (value string, ok bool, err error) {
	return s.value(ctx, cmdGetVariable, name)
}

// Hangup hangs up the session's channel. The session goes on: Asterisk
// sends HANGUP, and answers the commands allowed on a dead channel.
func (s *Session) Hangup(ctx context.Context) error {
	_, err := s.want(ctx, cmdHangup, 1)
	return err
}

// HangupChannel hangs up the named channel; one that does not exist is an
// ErrFailed.
func (s *Session) HangupChannel(ctx context.Context, channel string) error {
	if channel == "" {
		return argErr(cmdHangup, "no channel named")
	}
	_, err := s.want(ctx, cmdHangup, 1, channel)
	return err
}

// Noop does nothing; Asterisk answers it, dead channel or not.
func (s *Session) Noop(ctx context.Context) error {
	_, err := s.want(ctx, cmdNoop, 0)
	return err
}

// ReceiveChar waits up to timeout for one character of text on channels
// that carry text: 0 takes only what has arrived, a negative timeout waits
// for ever (as Asterisk reads them). None in time, or a channel that
// carries none, is an ErrFailed: Asterisk 22 answers -1 (hangup) for both,
// and ends the AGI with AGISTATUS=FAILURE.
func (s *Session) ReceiveChar(ctx context.Context, timeout time.Duration) (rune, error) {
	ms, err := receiveMillis(cmdReceiveChar, timeout)
	if err != nil {
		return 0, err
	}
	return s.key(ctx, cmdReceiveChar, ms)
}

// ReceiveText waits up to timeout for a text message on channels that
// carry text, as ReceiveChar (0: only what has arrived; negative: for
// ever); none in time is an ErrFailed.
func (s *Session) ReceiveText(ctx context.Context, timeout time.Duration) (string, error) {
	ms, err := receiveMillis(cmdReceiveText, timeout)
	if err != nil {
		return "", err
	}
	r, n, err := s.result(ctx, cmdReceiveText, ms)
	if err != nil {
		return "", err
	}
	if n != 1 {
		return "", failed(cmdReceiveText, r, n, ErrFailed)
	}
	return r.Data, nil
}

// receiveMillis is RECEIVE CHAR's and RECEIVE TEXT's timeout argument:
// Asterisk waits for ever on a negative one, returns at once on 0.
func receiveMillis(c *command, timeout time.Duration) (string, error) {
	if timeout < 0 {
		return "-1", nil
	}
	return millis(c, "timeout", timeout)
}

// RecordFile records the channel into file (without extension) in format
// ("wav", "gsm", "ulaw"...), until one of escapeDigits is pressed, timeout
// passes (0: no limit), the silence of opts, or a hangup. A recording cut
// by a hangup is returned with an ErrFailed: EndPos still says how much of
// it was written. Asterisk records on even when the connection closes, so
// the timeout sent is at most what is left of ctx's deadline and of the
// session's: the recording stops by itself before either.
func (s *Session) RecordFile(ctx context.Context, file, format, escapeDigits string, timeout time.Duration, opts RecordOptions) (Recording, error) {
	if file == "" || format == "" {
		return Recording{}, argErr(cmdRecordFile, "file and format must not be empty")
	}
	if err := checkKeys(cmdRecordFile, escapeDigits); err != nil {
		return Recording{}, err
	}
	if left := s.left(ctx); left > 0 && (timeout <= 0 || left < timeout) {
		timeout = left
	}
	ms := "-1"
	if timeout > 0 {
		var err error
		if ms, err = millis(cmdRecordFile, "timeout", timeout); err != nil {
			return Recording{}, err
		}
	}
	args := []string{file, format, escapeDigits, ms}
	// Asterisk tells the optional arguments apart by their look: a number
	// is the offset, "s=N" the silence, anything else the beep.
	if opts.Offset < 0 {
		return Recording{}, argErr(cmdRecordFile, "offset %d is negative", opts.Offset)
	}
	if opts.Offset > 0 {
		args = append(args, strconv.FormatInt(opts.Offset, 10))
	}
	if opts.Beep {
		args = append(args, "BEEP")
	}
	if opts.Silence < 0 {
		return Recording{}, argErr(cmdRecordFile, "silence %s is negative", opts.Silence)
	}
	if opts.Silence > 0 {
		args = append(args, "s="+strconv.FormatInt(int64(math.Ceil(opts.Silence.Seconds())), 10))
	}
	r, n, err := s.result(ctx, cmdRecordFile, args...)
	if err != nil {
		return Recording{}, err
	}
	rec := Recording{Ended: r.Data}
	rec.EndPos, _ = r.EndPos()
	if n < 0 {
		return rec, failed(cmdRecordFile, r, n, ErrFailed)
	}
	rec.Digit = rune(n)
	return rec, nil
}

// SayAlpha spells text, letter by letter, stoppable by any of
// escapeDigits, and returns the key that stopped it (0 if none did).
func (s *Session) SayAlpha(ctx context.Context, text, escapeDigits string) (rune, error) {
	if text == "" {
		return 0, argErr(cmdSayAlpha, "nothing to say")
	}
	return s.say(ctx, cmdSayAlpha, text, escapeDigits)
}

// SayDigits says digits (0-9) one by one.
func (s *Session) SayDigits(ctx context.Context, digits, escapeDigits string) (rune, error) {
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, argErr(cmdSayDigits, "digits %q: want 0-9 only", digits)
	}
	return s.say(ctx, cmdSayDigits, digits, escapeDigits)
}

// SayNumber says n as a number ("two thousand three hundred forty five").
func (s *Session) SayNumber(ctx context.Context, n int, escapeDigits string) (rune, error) {
	if n < math.MinInt32 || n > math.MaxInt32 {
		return 0, argErr(cmdSayNumber, "%d is out of Asterisk's 32-bit range", n)
	}
	return s.say(ctx, cmdSayNumber, strconv.Itoa(n), escapeDigits)
}

// SayPhonetic spells text in the phonetic alphabet ("alpha bravo").
func (s *Session) SayPhonetic(ctx context.Context, text, escapeDigits string) (rune, error) {
	if text == "" {
		return 0, argErr(cmdSayPhonetic, "nothing to say")
	}
	return s.say(ctx, cmdSayPhonetic, text, escapeDigits)
}

// SayDate says t's date (weekday, month, day, year), in Asterisk's time
// zone.
func (s *Session) SayDate(ctx context.Context, t time.Time, escapeDigits string) (rune, error) {
	u, err := unixSeconds(cmdSayDate, t)
	if err != nil {
		return 0, err
	}
	return s.say(ctx, cmdSayDate, u, escapeDigits)
}

// SayTime says t's time of day, in Asterisk's time zone.
func (s *Session) SayTime(ctx context.Context, t time.Time, escapeDigits string) (rune, error) {
	u, err := unixSeconds(cmdSayTime, t)
	if err != nil {
		return 0, err
	}
	return s.say(ctx, cmdSayTime, u, escapeDigits)
}

// SayDateTime says t in format, voicemail.conf's notation ("" for the
// language's default: "ABdY 'digits/at' IMp" in English), in zone (a name
// from the tz database, "" for Asterisk's own). A zone needs a format.
func (s *Session) SayDateTime(ctx context.Context, t time.Time, escapeDigits, format, zone string) (rune, error) {
	u, err := unixSeconds(cmdSayDateTime, t)
	if err != nil {
		return 0, err
	}
	if err := checkKeys(cmdSayDateTime, escapeDigits); err != nil {
		return 0, err
	}
	args := []string{u, escapeDigits}
	switch {
	case zone != "" && format == "":
		return 0, argErr(cmdSayDateTime, "zone %q needs a format: Asterisk reads an empty one as nothing to say", zone)
	case zone != "":
		args = append(args, format, zone)
	case format != "":
		args = append(args, format)
	}
	return s.key(ctx, cmdSayDateTime, args...)
}

// SendImage sends the named image on channels that carry images.
func (s *Session) SendImage(ctx context.Context, image string) error {
	if image == "" {
		return argErr(cmdSendImage, "no image named")
	}
	_, err := s.want(ctx, cmdSendImage, 0, image)
	return err
}

// SendText sends text on channels that carry text.
func (s *Session) SendText(ctx context.Context, text string) error {
	_, err := s.want(ctx, cmdSendText, 0, text)
	return err
}

// SetAutoHangup makes Asterisk hang the channel up after d; 0 cancels it.
func (s *Session) SetAutoHangup(ctx context.Context, d time.Duration) error {
	if d < 0 {
		return argErr(cmdSetAutoHangup, "%s is negative", d)
	}
	_, err := s.want(ctx, cmdSetAutoHangup, 0, strconv.FormatFloat(d.Seconds(), 'f', -1, 64))
	return err
}

// SetCallerID sets the channel's caller ID: a number, or `"Name" <number>`.
func (s *Session) SetCallerID(ctx context.Context, callerID string) error {
	_, err := s.want(ctx, cmdSetCallerID, 1, callerID)
	return err
}

// SetContext sets the context (name) the dialplan goes on in once the AGI ends.
func (s *Session) SetContext(ctx context.Context, name string) error {
	if name == "" {
		return argErr(cmdSetContext, "no context named")
	}
	_, err := s.want(ctx, cmdSetContext, 0, name)
	return err
}

// SetExtension sets the extension the dialplan goes on at once the AGI
// ends.
func (s *Session) SetExtension(ctx context.Context, extension string) error {
	if extension == "" {
		return argErr(cmdSetExtension, "no extension named")
	}
	_, err := s.want(ctx, cmdSetExtension, 0, extension)
	return err
}

// SetPriority sets the priority, a number or a label, the dialplan goes on
// at once the AGI ends. A label the extension does not have is an
// ErrSyntax (Asterisk answers 520).
func (s *Session) SetPriority(ctx context.Context, priority string) error {
	if priority == "" {
		return argErr(cmdSetPriority, "no priority named")
	}
	_, err := s.want(ctx, cmdSetPriority, 0, priority)
	return err
}

// SetMusic starts music on hold of class ("" for the default) when on is
// true, and stops it otherwise.
func (s *Session) SetMusic(ctx context.Context, on bool, class string) error {
	args := []string{"off"}
	if on {
		args[0] = "on"
		if class != "" {
			args = append(args, class)
		}
	}
	_, err := s.want(ctx, cmdSetMusic, 0, args...)
	return err
}

// SetVariable sets a channel variable, or writes a function ("CDR(userfield)").
func (s *Session) SetVariable(ctx context.Context, name, value string) error {
	if name == "" {
		return argErr(cmdSetVariable, "no variable named")
	}
	_, err := s.want(ctx, cmdSetVariable, 1, name, value)
	return err
}

// StreamFile plays file (without extension), stoppable by any of
// escapeDigits, from offset samples in. A file Asterisk cannot open, or a
// hangup while it plays, is an ErrFailed.
func (s *Session) StreamFile(ctx context.Context, file, escapeDigits string, offset int64) (Playback, error) {
	if file == "" {
		return Playback{}, argErr(cmdStreamFile, "no file named")
	}
	if err := checkKeys(cmdStreamFile, escapeDigits); err != nil {
		return Playback{}, err
	}
	if offset < 0 {
		return Playback{}, argErr(cmdStreamFile, "offset %d is negative", offset)
	}
	if offset > 0 {
		return s.playback(ctx, cmdStreamFile, file, escapeDigits, strconv.FormatInt(offset, 10))
	}
	return s.playback(ctx, cmdStreamFile, file, escapeDigits)
}

// ControlStreamFile plays file, which the caller can fast-forward, rewind
// and pause with the keys of opts, and stop with any of escapeDigits.
// EndPos is in milliseconds.
func (s *Session) ControlStreamFile(ctx context.Context, file, escapeDigits string, opts ControlOptions) (Playback, error) {
	if file == "" {
		return Playback{}, argErr(cmdControlStreamFile, "no file named")
	}
	for _, k := range []string{escapeDigits, opts.Forward, opts.Rewind, opts.Pause} {
		if err := checkKeys(cmdControlStreamFile, k); err != nil {
			return Playback{}, err
		}
	}
	if opts.Skip < 0 || opts.Offset < 0 {
		return Playback{}, argErr(cmdControlStreamFile, "skip %s and offset %s must not be negative", opts.Skip, opts.Offset)
	}
	skip := opts.Skip
	if skip == 0 {
		skip = 3 * time.Second
	}
	skipMs, err := millis(cmdControlStreamFile, "skip", skip)
	if err != nil {
		return Playback{}, err
	}
	offMs, err := millis(cmdControlStreamFile, "offset", opts.Offset)
	if err != nil {
		return Playback{}, err
	}
	// Positional: each one given needs those before it. Asterisk reads an
	// empty key as its default.
	all := []string{file, escapeDigits, skipMs, opts.Forward, opts.Rewind, opts.Pause, offMs}
	n := 2
	switch {
	case opts.Offset > 0:
		n = 7
	case opts.Pause != "":
		n = 6
	case opts.Rewind != "":
		n = 5
	case opts.Forward != "":
		n = 4
	case opts.Skip != 0:
		n = 3
	}
	return s.playback(ctx, cmdControlStreamFile, all[:n]...)
}

// TDDMode sets the channel's TDD mode: "on", "off", "tdd" or "mate". A
// channel without TDD support answers with an ErrRejected.
func (s *Session) TDDMode(ctx context.Context, mode string) error {
	switch mode {
	case "on", "off", "tdd", "mate":
	default:
		return argErr(cmdTDDMode, "mode %q: want on, off, tdd or mate", mode)
	}
	_, err := s.want(ctx, cmdTDDMode, 1, mode)
	return err
}

// Verbose writes msg to Asterisk's console at the given verbosity level
// (1 to 4).
func (s *Session) Verbose(ctx context.Context, msg string, level int) error {
	_, err := s.want(ctx, cmdVerbose, 1, msg, strconv.Itoa(level))
	return err
}

// WaitForDigit waits up to timeout for a key and returns it, 0 if none
// came; a negative timeout waits for as long as the session lasts.
func (s *Session) WaitForDigit(ctx context.Context, timeout time.Duration) (rune, error) {
	ms := "-1"
	if timeout >= 0 {
		var err error
		if ms, err = millis(cmdWaitForDigit, "timeout", timeout); err != nil {
			return 0, err
		}
	}
	return s.key(ctx, cmdWaitForDigit, ms)
}

// SpeechCreate creates the session's speech object on the named engine; an
// engine Asterisk does not have (or a second object) is an ErrRejected.
func (s *Session) SpeechCreate(ctx context.Context, engine string) error {
	if engine == "" {
		return argErr(cmdSpeechCreate, "no engine named")
	}
	_, err := s.want(ctx, cmdSpeechCreate, 1, engine)
	return err
}

// SpeechSet changes a setting of the speech engine.
func (s *Session) SpeechSet(ctx context.Context, name, value string) error {
	_, err := s.want(ctx, cmdSpeechSet, 1, name, value)
	return err
}

// SpeechDestroy destroys the session's speech object.
func (s *Session) SpeechDestroy(ctx context.Context) error {
	_, err := s.want(ctx, cmdSpeechDestroy, 1)
	return err
}

// SpeechLoadGrammar loads the grammar at path under name.
func (s *Session) SpeechLoadGrammar(ctx context.Context, name, path string) error {
	_, err := s.want(ctx, cmdSpeechLoadGrammar, 1, name, path)
	return err
}

// SpeechUnloadGrammar unloads the named grammar.
func (s *Session) SpeechUnloadGrammar(ctx context.Context, name string) error {
	_, err := s.want(ctx, cmdSpeechUnloadGrammar, 1, name)
	return err
}

// SpeechActivateGrammar activates the named grammar.
func (s *Session) SpeechActivateGrammar(ctx context.Context, name string) error {
	_, err := s.want(ctx, cmdSpeechActivateGrammar, 1, name)
	return err
}

// SpeechDeactivateGrammar deactivates the named grammar.
func (s *Session) SpeechDeactivateGrammar(ctx context.Context, name string) error {
	_, err := s.want(ctx, cmdSpeechDeactivateGrammar, 1, name)
	return err
}

// SpeechRecognize plays prompt while listening for speech and keys, for up
// to timeout (whole seconds; 0: no limit) once the prompt has played, from
// offset samples into the prompt. Without a speech object it is an
// ErrRejected.
func (s *Session) SpeechRecognize(ctx context.Context, prompt string, timeout time.Duration, offset int64) (SpeechResult, error) {
	if timeout < 0 || offset < 0 {
		return SpeechResult{}, argErr(cmdSpeechRecognize, "timeout %s and offset %d must not be negative", timeout, offset)
	}
	args := []string{prompt, strconv.FormatInt(int64(math.Ceil(timeout.Seconds())), 10)}
	if offset > 0 {
		args = append(args, strconv.FormatInt(offset, 10))
	}
	r, n, err := s.result(ctx, cmdSpeechRecognize, args...)
	if err != nil {
		return SpeechResult{}, err
	}
	if n != 1 {
		return SpeechResult{}, failed(cmdSpeechRecognize, r, n, ErrRejected)
	}
	res, err := parseSpeech(r.Raw)
	if err != nil {
		return SpeechResult{}, cmdErr(cmdSpeechRecognize.name, err)
	}
	return res, nil
}

// Gosub runs the dialplan subroutine at contextName,extension,priority (a
// number or a label) with args (${ARG1}...) until its Return, and returns
// once it has. A location that does not exist is an ErrFailed; a
// subroutine that ended without Return an ErrNoReturn.
func (s *Session) Gosub(ctx context.Context, contextName, extension, priority string, args ...string) error {
	if contextName == "" || extension == "" || priority == "" {
		return argErr(cmdGosub, "context, extension and priority must not be empty")
	}
	a := []string{contextName, extension, priority}
	if len(args) > 0 {
		a = append(a, strings.Join(args, ","))
	}
	r, n, err := s.result(ctx, cmdGosub, a...)
	if err != nil {
		return err
	}
	_, text, _ := strings.Cut(r.Raw[min(len(r.Raw), 4):], " ")
	switch {
	case n != 0:
		return &ResultError{Command: cmdGosub.name, Result: n, Data: text, Err: ErrFailed}
	case strings.Contains(text, "(abnormal exit)"):
		return &ResultError{Command: cmdGosub.name, Result: n, Data: text, Err: ErrNoReturn}
	}
	return nil
}

// result runs c and reads its result as a number.
func (s *Session) result(ctx context.Context, c *command, args ...string) (Reply, int, error) {
	r, err := s.run(ctx, c, args...)
	if err != nil {
		return r, 0, err
	}
	n, err := strconv.Atoi(r.Result)
	if err != nil {
		return r, 0, unexpected(c, r)
	}
	return r, n, nil
}

// want runs c, whose result is ok when it is want: -1 is an ErrFailed and,
// for a command whose success is 1, 0 an ErrRejected.
func (s *Session) want(ctx context.Context, c *command, want int, args ...string) (Reply, error) {
	r, n, err := s.result(ctx, c, args...)
	switch {
	case err != nil:
		return r, err
	case n == want:
		return r, nil
	case n == -1:
		return r, failed(c, r, n, ErrFailed)
	case n == 0 && want == 1:
		return r, failed(c, r, n, ErrRejected)
	}
	return r, unexpected(c, r)
}

// value runs c, whose reply is "result=1 (value)" or "result=0" for none.
func (s *Session) value(ctx context.Context, c *command, args ...string) (string, bool, error) {
	r, err := s.run(ctx, c, args...)
	if err != nil {
		return "", false, err
	}
	switch r.Result {
	case "1":
		return r.Data, true, nil
	case "0":
		return "", false, nil
	}
	return "", false, unexpected(c, r)
}

// key runs c, whose result is a key's character code, 0 for none, -1 for a
// failure.
func (s *Session) key(ctx context.Context, c *command, args ...string) (rune, error) {
	r, n, err := s.result(ctx, c, args...)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, failed(c, r, n, ErrFailed)
	}
	return rune(n), nil
}

func (s *Session) say(ctx context.Context, c *command, what, escapeDigits string) (rune, error) {
	if err := checkKeys(c, escapeDigits); err != nil {
		return 0, err
	}
	return s.key(ctx, c, what, escapeDigits)
}

// playback runs c, whose reply is a key and an endpos.
func (s *Session) playback(ctx context.Context, c *command, args ...string) (Playback, error) {
	r, n, err := s.result(ctx, c, args...)
	if err != nil {
		return Playback{}, err
	}
	var p Playback
	p.EndPos, _ = r.EndPos()
	if n < 0 {
		return p, failed(c, r, n, ErrFailed)
	}
	p.Digit = rune(n)
	return p, nil
}

func failed(c *command, r Reply, n int, err error) *ResultError {
	return &ResultError{Command: c.name, Result: n, Data: r.Data, Err: err}
}

func unexpected(c *command, r Reply) error {
	return cmdErr(c.name, fmt.Errorf("unexpected reply %.80q", r.Raw))
}

func argErr(c *command, format string, args ...any) error {
	return cmdErr(c.name, fmt.Errorf(format, args...))
}

// keys are the DTMF keys Asterisk reports.
const keys = "0123456789*#ABCD"

func isKeys(s string) bool { return strings.Trim(s, keys) == "" }

func checkKeys(c *command, s string) error {
	if !isKeys(s) {
		return argErr(c, "keys %q: want some of %s", s, keys)
	}
	return nil
}

// millis writes d in milliseconds, as Asterisk's 32-bit integers hold them.
func millis(c *command, what string, d time.Duration) (string, error) {
	ms := d.Milliseconds()
	if ms > math.MaxInt32 || ms < math.MinInt32 {
		return "", argErr(c, "%s %s is out of Asterisk's range", what, d)
	}
	return strconv.FormatInt(ms, 10), nil
}

func unixSeconds(c *command, t time.Time) (string, error) {
	u := t.Unix()
	if u < math.MinInt32 || u > math.MaxInt32 {
		return "", argErr(c, "time %s is out of Asterisk's 32-bit range", t)
	}
	return strconv.FormatInt(u, 10), nil
}

// parseSpeech reads SPEECH RECOGNIZE's reply, whose texts may hold spaces,
// quotes and parentheses:
//
//	200 result=1 (speech) endpos=0 results=1 score0=900 text0="a (b)" grammar0=g
//	200 result=1 (digit) digit=5 endpos=1200
//	200 result=1 (timeout) endpos=0
func parseSpeech(raw string) (SpeechResult, error) {
	var res SpeechResult
	rest, ok := strings.CutPrefix(raw, "200 result=1 (")
	if !ok {
		return res, fmt.Errorf("unexpected reply %.80q", raw)
	}
	res.Reason, rest, ok = strings.Cut(rest, ")")
	if !ok {
		return res, fmt.Errorf("unexpected reply %.80q", raw)
	}
	for rest = strings.TrimLeft(rest, " "); rest != ""; rest = strings.TrimLeft(rest, " ") {
		var k, v string
		k, rest, _ = strings.Cut(rest, "=")
		name := strings.TrimRight(k, "0123456789")
		index := k[len(name):]
		if strings.HasPrefix(rest, `"`) {
			// The text ends at the quote before its grammar, or at the
			// last quote: Asterisk does not escape quotes inside it.
			i := strings.Index(rest, `" grammar`+index+`=`)
			if i < 0 {
				i = strings.LastIndexByte(rest, '"')
			}
			if i <= 0 {
				return res, fmt.Errorf("reply %.80q: unterminated %s", raw, k)
			}
			v, rest = rest[1:i], rest[i+1:]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		idx := -1
		if index != "" {
			n, err := strconv.Atoi(index)
			if err != nil || n > 1000 {
				return res, fmt.Errorf("reply %.80q: field %q", raw, k)
			}
			idx = n
			for len(res.Matches) <= idx {
				res.Matches = append(res.Matches, SpeechMatch{})
			}
		}
		if idx < 0 && (name == "score" || name == "text" || name == "grammar") {
			continue
		}
		switch name {
		case "endpos":
			res.EndPos, _ = strconv.ParseInt(v, 10, 64)
		case "digit":
			if v != "" {
				res.Digit = rune(v[0])
			}
		case "score":
			res.Matches[idx].Score, _ = strconv.Atoi(v)
		case "text":
			res.Matches[idx].Text = v
		case "grammar":
			res.Matches[idx].Grammar = v
		}
	}
	return res, nil
}
