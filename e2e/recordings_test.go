//go:build e2e

package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/movidesk-agi/movidesk-agi/internal/debpkg"
)

// servedRecordings is the [recordings] section of a service that serves
// the monitor folder of this run's Asterisk on its own listener.
//
// MixMonitor names its files with Asterisk's paths, which inside the
// chroot are not the host's: the folder is given to the service by
// Asterisk's name, made to lead to the chroot's folder by a link on the
// host, as on a PBX, where both see one file system.
func servedRecordings(t *testing.T, format string) (section, publicURL string) {
	t.Helper()
	monitor := pbx.dir + "/spool/monitor"
	if _, err := os.Lstat(monitor); os.IsNotExist(err) {
		if err := os.MkdirAll(filepath.Dir(monitor), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(pbx.host(monitor), monitor); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(pbx.dir) })
	}
	port := freeTCPPort(t)
	publicURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	section = fmt.Sprintf("\n[recordings]\nenabled = true\nfolder = %q\nlisten = \"127.0.0.1:%d\"\npublic_url = %q\n", monitor, port, publicURL)
	if format != "" {
		section += fmt.Sprintf("format = %q\n", format)
	}
	return section, publicURL
}

// wavSeconds is how long the WAV at path plays: its data over its byte
// rate, from its header.
func wavSeconds(t *testing.T, path string) float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 44 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		t.Fatalf("%s is not a WAV file", path)
	}
	byteRate := binary.LittleEndian.Uint32(b[28:32])
	// The chunks after fmt: find data.
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:off+8]))
		if id == "data" {
			return float64(size) / float64(byteRate)
		}
		off += 8 + size + size%2
	}
	t.Fatalf("%s has no data chunk", path)
	return 0
}

// browser starts a headless Chromium for the test, installing Debian's
// package when it is missing.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := debpkg.Need(t.Context(), "/usr/bin/chromium", "chromium")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // as root, Chromium refuses to start with its sandbox
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// playInBrowser opens link as an agent does from the ticket: the player
// page loads the recording; it returns the duration the <audio> element
// found, after checking that a seek to its middle lands there (which
// needs Range requests answered 206).
func playInBrowser(t *testing.T, link string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser(t), time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(link)); err != nil {
		t.Fatalf("open %s in Chromium: %v", link, err)
	}
	duration, err := chromedp.Run(ctx, chromedp.Poll[float64](`(() => { const a = document.querySelector("audio");
		return a && a.readyState >= 1 && isFinite(a.duration) && a.duration > 0 ? a.duration : 0 })()`))
	if err != nil {
		t.Fatalf("the recording did not load in Chromium: %v", err)
	}
	target := duration / 2
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const a = document.querySelector("audio"); a.currentTime = %f; return true })()`, target))); err != nil {
		t.Fatalf("seeking in Chromium: %v", err)
	}
	landed, err := chromedp.Run(ctx, chromedp.Poll[float64](`(() => { const a = document.querySelector("audio");
		return !a.seeking && a.readyState >= 2 && a.seekable.length > 0 ? a.currentTime : 0 })()`))
	if err != nil {
		t.Fatalf("seeking in Chromium: %v", err)
	}
	if math.Abs(landed-target) > 0.5 {
		t.Errorf("a seek to %.1f s landed at %.1f s: the recording is not seekable (Range)", target, landed)
	}
	return duration
}

// checkRangeServed checks the service answered Chromium's Range requests
// with 206, as its access log tells.
func checkRangeServed(t *testing.T, svc *service, callID string) {
	t.Helper()
	if !strings.Contains(svc.logText(), `"call_id":"`+callID+`","addr":"127.0.0.1","status":206`) {
		t.Errorf("no Range request of %s answered 206 in the access log:\n%s", callID, svc.logText())
	}
}

// On the plain dialplan, with [recordings] on and nothing else to set: the
// recorded call's completion carries a link, and the link, opened in a
// real Chromium, plays the recording MixMonitor wrote.
func TestRecordingPlaysFromTheTicket(t *testing.T) {
	section, publicURL := servedRecordings(t, "")
	svc := startService(t, serviceOptions{extra: section})
	setAgent(t, "5252", "answer")
	c := placeCall(t, viaRecordingServed+"5252").arrived(t)
	svc.waitAccepted(t, 1, 30*time.Second)
	c.waitConnected(t)
	file := pbx.host(pbx.dir + "/spool/monitor/" + c.UniqueID + ".wav")
	waitFor(t, 30*time.Second, "two seconds of sound in "+file, func() (bool, error) {
		fi, err := os.Stat(file)
		return err == nil && fi.Size() >= wavHeader+2*16000, nil
	})
	c.agentHangsUp(t, "5252")
	got := svc.waitAccepted(t, 2, 30*time.Second)
	link := got[1].Query.Get("link")
	if got[1].Endpoint != "asterisk_completedCall" || !strings.HasPrefix(link, publicURL+"/r/"+c.LinkedID+"/") {
		t.Fatalf("Movidesk got %s with link %q; want the completion with a link under %s", got[1].Endpoint, link, publicURL)
	}
	finishSessions(t, "", "transfer", "hangup")
	// MixMonitor closes the file once the channel is gone, after the
	// hangup route: the duration is read from its finished header.
	waitFor(t, 30*time.Second, "MixMonitor to close "+file, func() (bool, error) {
		b, err := os.ReadFile(file)
		return err == nil && len(b) > 44 && binary.LittleEndian.Uint32(b[4:8]) != 0, nil
	})
	want := wavSeconds(t, file)
	if d := playInBrowser(t, link); math.Abs(d-want) > 0.5 {
		t.Errorf("Chromium found %.2f s of audio; the recording holds %.2f s", d, want)
	}
	checkRangeServed(t, svc, c.LinkedID)
}

// FreePBX-shaped: FreePBX's own recording (its day folders, its name in
// CDR(recordingfile), passed by the examples' hangup hook) plays from the
// link, with no recording_link template to write.
func TestFreePBXRecordingPlaysFromTheTicket(t *testing.T) {
	pbx.mustCLI(t, "database put AMPUSER 5252/recording/in/external force")
	t.Cleanup(func() { pbx.mustCLI(t, "database del AMPUSER 5252/recording/in/external") })
	section, publicURL := servedRecordings(t, "")
	svc := startService(t, serviceOptions{
		queues: map[string]int{"4000": fpbxQueueID, "4001": fpbxLocalQueueID, "6000": fpbxGroupID},
		extra:  section,
	})
	setAgent(t, "5252", "answer")
	c := placeCall(t, viaFreePBX+"5252").arrived(t)
	svc.waitAccepted(t, 1, 30*time.Second)
	c.waitConnected(t)
	monitor := pbx.host(pbx.dir + "/spool/monitor")
	var file string
	waitFor(t, 30*time.Second, "FreePBX's recording of "+c.caller, func() (bool, error) {
		m, err := filepath.Glob(monitor + "/*/*/*/in-5252-" + c.caller + "-*.wav")
		if len(m) == 1 {
			file = m[0]
		}
		return len(m) == 1, err
	})
	waitFor(t, 30*time.Second, "two seconds of sound in "+file, func() (bool, error) {
		fi, err := os.Stat(file)
		return err == nil && fi.Size() >= wavHeader+2*16000, nil
	})
	c.agentHangsUp(t, "5252")
	got := svc.waitAccepted(t, 2, 30*time.Second)
	link := got[1].Query.Get("link")
	if !strings.HasPrefix(link, publicURL+"/r/"+c.LinkedID+"/") {
		t.Fatalf("the completion's link is %q; want one under %s", link, publicURL)
	}
	finishSessions(t, "", "transfer", "hangup")
	waitFor(t, 30*time.Second, "MixMonitor to close "+file, func() (bool, error) {
		b, err := os.ReadFile(file)
		return err == nil && len(b) > 44 && binary.LittleEndian.Uint32(b[4:8]) != 0, nil
	})
	want := wavSeconds(t, file)
	if d := playInBrowser(t, link); math.Abs(d-want) > 0.5 {
		t.Errorf("Chromium found %.2f s of audio; FreePBX's recording holds %.2f s", d, want)
	}
	checkRangeServed(t, svc, c.LinkedID)
}

// FreePBX set to record GSM (MIXMON_FORMAT wav49: a .WAV no browser
// plays): with format = "mp3" the same link plays, converted by ffmpeg.
func TestGSMRecordingPlaysAsMP3(t *testing.T) {
	if _, err := debpkg.Need(t.Context(), "/usr/bin/ffmpeg", "ffmpeg"); err != nil {
		t.Fatal(err)
	}
	pbx.mustCLI(t, "database put AMPUSER 5252/recording/in/external force")
	pbx.mustCLI(t, "dialplan set global MIXMON_FORMAT wav49")
	t.Cleanup(func() {
		pbx.mustCLI(t, "database del AMPUSER 5252/recording/in/external")
		pbx.mustCLI(t, "dialplan set global MIXMON_FORMAT wav")
	})
	section, publicURL := servedRecordings(t, "mp3")
	svc := startService(t, serviceOptions{
		queues: map[string]int{"4000": fpbxQueueID, "4001": fpbxLocalQueueID, "6000": fpbxGroupID},
		extra:  section,
	})
	setAgent(t, "5252", "answer")
	c := placeCall(t, viaFreePBX+"5252").arrived(t)
	svc.waitAccepted(t, 1, 30*time.Second)
	c.waitConnected(t)
	monitor := pbx.host(pbx.dir + "/spool/monitor")
	var file string
	waitFor(t, 30*time.Second, "FreePBX's GSM recording of "+c.caller, func() (bool, error) {
		m, err := filepath.Glob(monitor + "/*/*/*/in-5252-" + c.caller + "-*.WAV")
		if len(m) == 1 {
			file = m[0]
		}
		return len(m) == 1, err
	})
	// GSM: 1625 bytes a second.
	waitFor(t, 30*time.Second, "two seconds of sound in "+file, func() (bool, error) {
		fi, err := os.Stat(file)
		return err == nil && fi.Size() >= 60+2*1625, nil
	})
	c.agentHangsUp(t, "5252")
	got := svc.waitAccepted(t, 2, 30*time.Second)
	link := got[1].Query.Get("link")
	if !strings.HasPrefix(link, publicURL+"/r/"+c.LinkedID+"/") {
		t.Fatalf("the completion's link is %q; want one under %s", link, publicURL)
	}
	finishSessions(t, "", "transfer", "hangup")
	waitFor(t, 30*time.Second, "MixMonitor to close "+file, func() (bool, error) {
		b, err := os.ReadFile(file)
		return err == nil && len(b) > 60 && binary.LittleEndian.Uint32(b[4:8]) != 0, nil
	})
	want := wavSeconds(t, file)
	if d := playInBrowser(t, link); math.Abs(d-want) > 0.5 {
		t.Errorf("Chromium found %.2f s of MP3; the GSM recording holds %.2f s", d, want)
	}
	checkRangeServed(t, svc, c.LinkedID)
	if !strings.Contains(svc.logText(), `"result":"served"`) || strings.Contains(svc.logText(), `"result":"convert_failed"`) {
		t.Errorf("the recording was not served converted:\n%s", svc.logText())
	}
}
