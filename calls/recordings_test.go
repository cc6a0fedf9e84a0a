package calls_test

import (
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/recordings"
)

const monitor = "/var/spool/asterisk/monitor"

// servedRig is a rig whose service serves the recordings of monitor.
func servedRig(t *testing.T, mod func(*calls.Config)) (*rig, *recordings.Signer) {
	t.Helper()
	key, err := recordings.LoadOrCreateKey(filepath.Join(t.TempDir(), "recordings.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer := &recordings.Signer{PublicURL: "https://pbx.example.com:8443", Keys: recordings.NewRing(key)}
	r := newRig(t, func(c *calls.Config) {
		c.Recordings, c.RecordingsFolder = signer, monitor
		if mod != nil {
			mod(c)
		}
	})
	return r, signer
}

func answered(r *rig, id string) {
	r.t.Helper()
	r.replay(env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "branch=5252", "queue=2", "id="+id) +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") + status("OK", ""))
}

func transferred(id string) string {
	return "GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
		"id", id, "queueId", "2", "transferDate", nowDate)
}

// storedRecording is where the link of call id leads, as the store holds it.
func storedRecording(t *testing.T, r *rig, id string) (string, bool) {
	t.Helper()
	rec, found, err := callstate.New(r.store, callstate.Options{}).Recording(recordings.Ref(id))
	if err != nil {
		t.Fatal(err)
	}
	if found && rec.CallID != id {
		t.Errorf("recording of %q stored for call %q", id, rec.CallID)
	}
	return rec.Path, found
}

// With the recordings served, the end of a recorded call carries its link
// without a template: the recording found where the PBX says it is.
func TestTheServedLinkFindsTheRecordingByItself(t *testing.T) {
	const freepbx = "q-400-4733990777-20261124-125231-" + linked + ".wav"
	for _, tc := range []struct {
		name  string
		args  []string
		reads string // the channel's variables the route reads, in order
		file  string // where the link leads; "" = no link
	}{
		{"MixMonitor", nil, get("MIXMONITOR_FILENAME", "200 result=1 ("+monitor+"/"+linked+".wav)"), linked + ".wav"},
		{"MixMonitorDayFolder", nil, get("MIXMONITOR_FILENAME", "200 result=1 ("+monitor+"/2026/11/24/"+freepbx+")"), "2026/11/24/" + freepbx},
		{"FreePBXRecordingFile", nil, get("MIXMONITOR_FILENAME", "200 result=0") + get("CDR(recordingfile)", "200 result=1 ("+freepbx+")"), "2026/11/24/" + freepbx},
		{"RecordingArgument", []string{"recording=2026/11/24/" + freepbx}, "", "2026/11/24/" + freepbx},
		{"NotRecorded", nil, get("MIXMONITOR_FILENAME", "200 result=0") + get("CDR(recordingfile)", "200 result=0"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, signer := servedRig(t, nil)
			answered(r, "c1")
			r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", append([]string{"id=c1"}, tc.args...)...) +
				tc.reads + status("OK", ""))
			link := ""
			if tc.file != "" {
				var err error
				if link, err = signer.Link("c1"); err != nil {
					t.Fatal(err)
				}
			}
			r.wantAccepted(transferred("c1"), "GET asterisk_completedCall?"+q("completedDate", nowDate, "id", "c1", "link", link))
			path, found := storedRecording(t, r, "c1")
			if path != tc.file || found != (tc.file != "") {
				t.Errorf("stored recording = %q (found %v); want %q", path, found, tc.file)
			}
			if tc.file != "" && !strings.Contains(r.logs.String(), `"recording":"`+tc.file+`"`) {
				t.Errorf("the call event's log line does not name the recording %s:\n%s", tc.file, r.logs)
			}
		})
	}
}

// The administrator's own links win: link= and calls.recording_link, where
// set, are sent as before, and no recording is read from the channel.
func TestTheAdministratorsLinkWinsOverTheServedOne(t *testing.T) {
	r, _ := servedRig(t, func(c *calls.Config) {
		c.Accounts[0].RecordingLink = template.Must(template.New("").Parse("https://rec.example.com/{{.LinkedID}}.wav"))
	})
	answered(r, "t1")
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "id=t1") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") + status("OK", ""))
	answered(r, "a1")
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "id=a1", "link=https://files.example.com/a1.mp3") +
		status("OK", ""))
	r.wantAccepted(
		transferred("t1"), "GET asterisk_completedCall?"+q("completedDate", nowDate, "id", "t1", "link", "https://rec.example.com/"+linked+".wav"),
		transferred("a1"), "GET asterisk_completedCall?"+q("completedDate", nowDate, "id", "a1", "link", "https://files.example.com/a1.mp3"))
	for _, id := range []string{"t1", "a1"} {
		if _, found := storedRecording(t, r, id); found {
			t.Errorf("a recording was stored for %s, whose link is the administrator's", id)
		}
	}
}

// A recording outside the folder gets no link, never one that would
// serve it: the call ends without, and the log says why.
func TestARecordingOutsideTheFolderGetsNoLink(t *testing.T) {
	r, _ := servedRig(t, nil)
	answered(r, "o1")
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "id=o1") +
		get("MIXMONITOR_FILENAME", "200 result=1 (/etc/shadow)") + status("OK", ""))
	r.wantAccepted(transferred("o1"), "GET asterisk_completedCall?"+q("completedDate", nowDate, "id", "o1", "link", ""))
	if _, found := storedRecording(t, r, "o1"); found {
		t.Error("a recording outside the folder was stored")
	}
	if !strings.Contains(r.logs.String(), `completed without its recording link: recording \"/etc/shadow\" is not under the recordings' folder`) {
		t.Errorf("the log does not say why the link was left out:\n%s", r.logs)
	}
}

// The link route sends the served link of the recording it names, and
// without one says what to pass.
func TestTheLinkRouteSendsTheServedLink(t *testing.T) {
	r, signer := servedRig(t, nil)
	answered(r, "l1")
	r.replay(env("link", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "id=l1", "recording="+linked+".WAV") +
		status("OK", ""))
	r.replay(env("link", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "id=l2") +
		get("MIXMONITOR_FILENAME", "200 result=0") + get("CDR(recordingfile)", "200 result=0") +
		status("ERROR", "no recording link: pass link= or recording=, or set calls.recording_link; no recording is known for the channel"))
	link, err := signer.Link("l1")
	if err != nil {
		t.Fatal(err)
	}
	r.wantAccepted(transferred("l1"), "POST setMadeCallLink?"+q("Link", link, "id", "l1"))
	if path, _ := storedRecording(t, r, "l1"); path != linked+".WAV" {
		t.Errorf("stored recording = %q; want %s.WAV", path, linked)
	}
}

// A call placed from Movidesk (click-to-call) gets its recording with
// setMadeCallLink: the served link, within its 256 characters.
func TestTheMadeCallGetsTheServedLink(t *testing.T) {
	r, signer := servedRig(t, nil)
	if err := callstate.New(r.store, callstate.Options{}).Made(t.Context(), "", "m1"); err != nil {
		t.Fatal(err)
	}
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-agents", "id=m1") +
		get("MIXMONITOR_FILENAME", "200 result=1 ("+monitor+"/m1.wav)") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") + get("QUEUENAME", "200 result=0") + status("OK", ""))
	link, err := signer.Link("m1")
	if err != nil {
		t.Fatal(err)
	}
	r.wantAccepted("POST setMadeCallLink?" + q("Link", link, "id", "m1"))
	if path, _ := storedRecording(t, r, "m1"); path != "m1.wav" {
		t.Errorf("stored recording = %q; want m1.wav", path)
	}
}

// A spooled end has no channel to read: the example's fallback passes
// MIXMONITOR_FILENAME as recording=, and the imported end carries the
// served link all the same.
func TestASpooledEndCarriesTheServedLink(t *testing.T) {
	key, err := recordings.LoadOrCreateKey(filepath.Join(t.TempDir(), "recordings.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer := &recordings.Signer{PublicURL: "https://pbx.example.com:8443", Keys: recordings.NewRing(key)}
	r := newSpoolRig(t, func(c *calls.Config) { c.Recordings, c.RecordingsFolder = signer, monitor })
	path := newSpool(t)
	appendSpool(t, path, spoolLine("transfer", spoolEpoch, append(callerSide, "arg", "id=sp", "arg", "branch=5252")...))
	appendSpool(t, path, spoolLine("hangup", spoolEpoch, append(callerSide, "arg", "id=sp", "arg", "recording=%2Fvar%2Fspool%2Fasterisk%2Fmonitor%2F"+linked+".wav")...))
	if n := r.importSpool(path); n != 2 {
		t.Fatalf("imported %d events, want 2", n)
	}
	r.delivers(2)
	want, err := signer.Link("sp")
	if err != nil {
		t.Fatal(err)
	}
	got := r.movidesk.Accepted()
	if link := got[len(got)-1].Query.Get("link"); link != want {
		t.Errorf("the spooled end's link = %q; want the served one, %q", link, want)
	}
	if path, _ := storedRecording(t, r, "sp"); path != linked+".wav" {
		t.Errorf("stored recording = %q; want %s.wav", path, linked)
	}
}

// With a lifetime, each link made is another text; the same recording's
// link, the route run twice (by AGI and from the spool, in h and in a
// hangup handler), is still sent once.
func TestALinkWithALifetimeIsSentOnce(t *testing.T) {
	clock := now
	key, err := recordings.LoadOrCreateKey(filepath.Join(t.TempDir(), "recordings.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer := &recordings.Signer{PublicURL: "https://pbx.example.com:8443", Keys: recordings.NewRing(key), Lifetime: 24 * time.Hour,
		Now: func() time.Time { return clock }}
	r := newRig(t, func(c *calls.Config) { c.Recordings, c.RecordingsFolder = signer, monitor })
	answered(r, "e1")
	link := env("link", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "id=e1", "recording="+linked+".wav") + status("OK", "")
	r.replay(link)
	clock = clock.Add(time.Minute)
	r.replay(link)
	if got := r.accepted(); len(got) != 2 {
		t.Errorf("Movidesk got %d requests; want the transfer and one link:\n%v", len(got), got)
	}
	if err := callstate.New(r.store, callstate.Options{}).Made(t.Context(), "", "m2"); err != nil {
		t.Fatal(err)
	}
	end := env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-agents", "id=m2", "recording=m2.wav") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") + get("QUEUENAME", "200 result=0") + status("OK", "")
	r.replay(end)
	clock = clock.Add(time.Minute)
	r.replay(end)
	if got := r.accepted(); len(got) != 3 {
		t.Errorf("Movidesk got %d requests; want the made call's link once more:\n%v", len(got), got)
	}
}
