//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// viaFreePBX is the number prefix of the trunk's calls that enter the
// FreePBX-shaped dialplan: 6, then the DID (an extension, a queue, a ring
// group).
const viaFreePBX = "6"

// viaFreePBXUnhooked is the prefix of a FreePBX trunk without the
// snippet's context: 0, then the DID.
const viaFreePBXUnhooked = "0"

// Movidesk queue ids the FreePBX tests map their queues and ring group to
// ([queues] "4000" = 40...); calls to an extension take defaultQueueID.
const (
	fpbxQueueID      = 40 // queue 4000: one member, Local/5252@from-queue/n
	fpbxLocalQueueID = 41 // queue 4001: Local/5252 and Local/5253, ringall
	fpbxGroupID      = 60 // ring group 6000: 5252 then 5253, hunt
)

// freepbxContexts are the snippet's contexts, which checkConfig requires.
var freepbxContexts = []string{
	"movidesk-freepbx-from-pstn", "movidesk-freepbx-inbound", "movidesk-freepbx-hangup",
	"movidesk-freepbx-queue-answered", "macro-dialout-one-predial-hook", "macro-dial-ringall-predial-hook",
	"macro-dial-hunt-predial-hook", "movidesk-freepbx-dial-options", "movidesk-freepbx-answered",
	"movidesk-freepbx-fallback", "movidesk-freepbx-doctor", "movidesk-freepbx-doctor-agent",
}

// freepbxGenerated stands for FreePBX 17's generated dialplan
// (extensions_additional.conf): the contexts, hook points and variables
// FreePBX's public sources document, each reduced to what a call to an
// extension, a queue or a ring group goes through. Written from that
// structure, not copied. The three predial hooks' empty stubs are left out:
// the snippet's take their place, as they do on FreePBX.
const freepbxGenerated = `; Shaped like FreePBX 17's generated dialplan (see freepbx_test.go).
[globals]
DIAL_OPTIONS=Ttr
RINGTIMER_DEFAULT=30
RG_RINGTIME=2
MIXMON_FORMAT=wav
MIXMON_DIR=
; FreePBX reads globals_custom.conf into [globals].
#include "examples/freepbx/globals_custom.conf"

; The test's trunk: 6<DID> arrives on the trunk whose context the
; administrator set to the snippet's. The agents' phones are FreePBX
; extensions, whose endpoint context is from-internal: a transfer (REFER)
; from them lands there.
[e2e-inbound]
exten => _` + viaFreePBX + `XXXX,1,Gosub(e2e-remember,s,1)
; A caller number the test chose (e2e-callerid), commas and all: the
; carrier's, which the caller controls.
 same => n,Set(E2E_CALLERID=${DB(e2e-callerid/${CALLERID(num)})})
 same => n,GotoIf($[${LEN(${E2E_CALLERID})} = 0]?route)
 same => n,Set(CALLERID(num)=${E2E_CALLERID})
 same => n(route),Set(__TRANSFER_CONTEXT=from-internal)
 same => n,Goto(movidesk-freepbx-from-pstn,${EXTEN:1},1)
; Another trunk, whose context the administrator left at from-pstn: the
; snippet never sees its calls (reconcile_test.go).
exten => _` + viaFreePBXUnhooked + `XXXX,1,Gosub(e2e-remember,s,1)
 same => n,Set(__TRANSFER_CONTEXT=from-internal)
 same => n,Goto(from-pstn,${EXTEN:1},1)

; Inbound: from-pstn is only includes; ext-did holds the inbound routes.
[from-pstn]
include => from-pstn-custom
include => ext-did
include => ext-did-post-custom
include => from-did-direct
include => ext-did-catchall
[from-pstn-custom]
[ext-did-post-custom]
[ext-did-catchall]

[ext-did]
include => ext-did-custom
exten => _525X,1,Set(__FROM_DID=${EXTEN})
 same => n,Set(__DIRECTION=INBOUND)
 same => n,Goto(from-did-direct,${EXTEN},1)
exten => _400X,1,Set(__FROM_DID=${EXTEN})
 same => n,Set(__DIRECTION=INBOUND)
 same => n,Goto(ext-queues,${EXTEN},1)
exten => 6000,1,Set(__FROM_DID=${EXTEN})
 same => n,Set(__DIRECTION=INBOUND)
 same => n,Goto(ext-group,${EXTEN},1)
[ext-did-custom]

[from-did-direct]
include => ext-findmefollow
include => ext-local
[ext-findmefollow]

; Internal: the agents' phones, queue members and transfers.
[from-internal]
include => from-internal-xfer
[from-internal-xfer]
include => from-internal-custom
include => from-internal-additional
[from-internal-custom]
[from-internal-additional]
include => from-internal-additional-custom
include => ext-local
include => ext-group
include => ext-queues
[from-internal-additional-custom]

; Extensions: ext-local, macro-exten-vm, then dial-one with its predial hook.
[ext-local]
include => ext-local-custom
exten => _525X,1,Set(__RINGTIMER=${RINGTIMER_DEFAULT})
 same => n,Gosub(macro-exten-vm,s,1(novm,${EXTEN},0,0,0))
 same => n,Hangup()
[ext-local-custom]

[macro-exten-vm]
exten => s,1,Set(__EXTTOCALL=${ARG2})
 same => n,Gosub(sub-record-check,s,1(exten,${EXTTOCALL},${DB(AMPUSER/${EXTTOCALL}/recording/in/external)}))
 same => n,Gosub(macro-dial-one,s,1(${RINGTIMER},${DIAL_OPTIONS},${EXTTOCALL}))
 same => n,Return()

; ARG1 the ring time, ARG2 the Dial options, ARG3 the extension. FreePBX
; reads the extension's devices from its database; here each extension is
; one PJSIP device of its number. U(macro-auto-blkvm) when a queue or ring
; group has the call (NODEST), then the hook, then Dial with FreePBX's b().
[macro-dial-one]
exten => s,1,Set(DEXTEN=${ARG3})
 same => n,Set(DSTRING=PJSIP/${DEXTEN})
 same => n(skiptrace),Set(D_OPTIONS=${IF($["${NODEST}"!="" & ${REGEX("(U[(]macro-auto-blkvm[)])" ${ARG2})} != 1]?${ARG2}U(macro-auto-blkvm):${ARG2})})
 same => n(godial),Gosub(macro-dialout-one-predial-hook,s,1())
 same => n,ExecIf($["${DIRECTION}" = "INBOUND"]?Set(D_OPTIONS=${STRREPLACE(D_OPTIONS,T)}I))
 same => n(dial),Dial(${DSTRING},${ARG1},${D_OPTIONS}b(func-apply-sipheaders^s^1))
 same => n,Return()

; FreePBX's clears the call's voicemail block on the answering leg; this
; one notes that it ran, so the tests see FreePBX's U() survive.
[macro-auto-blkvm]
exten => s,1,Set(__MACRO_RESULT=)
 same => n,Set(DB(e2e-blkvm/${CHANNEL(linkedid)})=${CHANNEL})
 same => n,Return()

; Dial's b(): FreePBX's SIP headers on each called channel; noted likewise.
[func-apply-sipheaders]
exten => s,1,Set(DB(e2e-sipheaders/${CHANNEL(linkedid)})=${CHANNEL})
 same => n,Return()

; Recording: FreePBX's naming, <kind>-<to>-<from>-<YYYYMMDD>-<HHMMSS>-<uniqueid>
; under YYYY/MM/DD, the name in the CDR's recordingfile. ARG3 is the
; policy; only force records here.
[sub-record-check]
exten => s,1,GotoIf($["${REC_STATUS}" != ""]?initialized)
 same => n,Set(__REC_STATUS=INITIALIZED)
 same => n,Set(NOW=${EPOCH})
 same => n,Set(__DAY=${STRFTIME(${NOW},,%d)})
 same => n,Set(__MONTH=${STRFTIME(${NOW},,%m)})
 same => n,Set(__YEAR=${STRFTIME(${NOW},,%Y)})
 same => n,Set(__TIMESTR=${YEAR}${MONTH}${DAY}-${STRFTIME(${NOW},,%H%M%S)})
 same => n,Set(__FROMEXTEN=${IF($[${LEN(${CALLERID(num)})}]?${CALLERID(num)}:unknown)})
 same => n,Set(__MON_FMT=${IF($["${MIXMON_FORMAT}"="wav49"]?WAV:${MIXMON_FORMAT})})
 same => n(initialized),GotoIf($["${ARG3}" != "force"]?done)
 same => n,Set(__CALLFILENAME=${IF($["${ARG1}" = "exten"]?in:${ARG1})}-${ARG2}-${FROMEXTEN}-${TIMESTR}-${UNIQUEID})
 same => n,Set(__REC_STATUS=RECORDING)
 same => n,Set(CDR(recordingfile)=${CALLFILENAME}.${MON_FMT})
 same => n,MixMonitor(${MIXMON_DIR}${YEAR}/${MONTH}/${DAY}/${CALLFILENAME}.${MIXMON_FORMAT})
 same => n(done),Return()

; Queues: NODEST and U(macro-auto-blkvm) for the members, QGOSUB (the
; global, unless a virtual queue set VQ_GOSUB) passed to Queue(). Asterisk 21
; and later have no macro argument; FreePBX 17 leaves it out there.
[ext-queues]
include => ext-queues-custom
exten => _400X,1,Answer()
 same => n,ExecIf($["${REGEX("(U[(]macro-auto-blkvm[)])" ${DIAL_OPTIONS})}" != "1"]?Set(_DIAL_OPTIONS=${DIAL_OPTIONS}U(macro-auto-blkvm)))
 same => n,Set(__NODEST=${EXTEN})
 same => n(qoptions),Set(QOPTIONS=t)
 same => n(qgosub),Set(QGOSUB=${IF($[${LEN(${VQ_GOSUB})}>0]?${VQ_GOSUB}:${QGOSUB})})
 same => n,Set(VQ_GOSUB=)
 same => n(qagi),Set(QAGI=${IF($[${LEN(${VQ_AGI})}>0]?${VQ_AGI}:${QAGI})})
 same => n,Set(VQ_AGI=)
 same => n,Gosub(sub-record-check,s,1(q,${EXTEN},dontcare))
 same => n,Set(QMAXWAIT=300)
 same => n,Set(QUEUENUM=${EXTEN})
 same => n,Set(QUEUEJOINTIME=${EPOCH})
 same => n(qcall),Queue(${EXTEN},${QOPTIONS},,,${QMAXWAIT},${QAGI},${QGOSUB},${QRULE},${QPOSITION})
 same => n,Set(__NODEST=)
 same => n,Hangup()
[ext-queues-custom]

; The queue members' Local channels come in here and ring the extension.
[from-queue]
exten => _X.,1,Set(QAGENT=${EXTEN})
 same => n,Goto(from-internal,${QAGENT},1)

; Ring groups: NODEST, then macro-dial over the members; its dialparties
; builds ds (devices,timeout,options), with U(macro-auto-blkvm), and each
; strategy calls its predial hook before its Dial.
[ext-group]
include => ext-group-custom
exten => 6000,1,Set(__NODEST=${EXTEN})
 same => n,Set(RingGroupMethod=hunt)
 same => n,Gosub(sub-record-check,s,1(group,${EXTEN},dontcare))
 same => n,Gosub(macro-dial,s,1(${RG_RINGTIME},${DIAL_OPTIONS},5252-5253))
 same => n,Set(__NODEST=)
 same => n,Hangup()
[ext-group-custom]

; ARG1 the ring time, ARG2 the options, ARG3 the members, dash-separated.
[macro-dial]
exten => s,1,Set(DIALOPTS=${ARG2})
 same => n,ExecIf($["${NODEST}" != "" & ${REGEX("(U[(]macro-auto-blkvm[)])" ${DIALOPTS})} != 1]?Set(DIALOPTS=${DIALOPTS}U(macro-auto-blkvm)))
 same => n,GotoIf($["${RingGroupMethod}" = "hunt"]?huntdial)
 same => n(normdial),Set(ds=PJSIP/${STRREPLACE(ARG3,-,&PJSIP/)},${ARG1},${DIALOPTS})
 same => n,Gosub(macro-dial-ringall-predial-hook,s,1())
 same => n(nddialapp),Dial(${ds}b(func-apply-sipheaders^s^1))
 same => n,Return()
 same => n(huntdial),Set(ds=,${ARG1},${DIALOPTS})
 same => n,Set(HuntLoop=1)
 same => n(huntstart),Set(HuntMember=HuntMember${HuntLoop})
 same => n,Set(${HuntMember}=PJSIP/${CUT(ARG3,-,${HuntLoop})})
 same => n,Gosub(macro-dial-hunt-predial-hook,s,1())
 same => n(hsdialapp),Dial(${${HuntMember}}${ds}b(func-apply-sipheaders^s^1))
 same => n,GotoIf($["${DIALSTATUS}" = "ANSWER"]?done)
 same => n,Set(HuntLoop=$[${HuntLoop} + 1])
 same => n,GotoIf($[${HuntLoop} <= ${FIELDQTY(ARG3,-)}]?huntstart)
 same => n(done),Return()

; The stub of the hook the snippet does not fill.
[macro-dialout-trunk-predial-hook]
exten => s,1,Return()
`

// freepbxQueues stands for FreePBX's queues_additional.conf: queues named
// by number, members Local channels into from-queue. Neither
// setinterfacevar nor setqueuevar: the snippet does not need them.
const freepbxQueues = `; Shaped like FreePBX's queues_additional.conf (see freepbx_test.go).
[4000]
strategy = ringall
timeout = 15
retry = 1
member => Local/5252@from-queue/n

[4001]
strategy = ringall
timeout = 15
retry = 1
member => Local/5252@from-queue/n
member => Local/5253@from-queue/n
`

// startFreePBXService runs movidesk-agi as a FreePBX administrator would
// configure it: the queues and the ring group mapped by number, FreePBX's
// recording file in the link.
func startFreePBXService(t *testing.T) *service {
	t.Helper()
	return startService(t, serviceOptions{
		queues:        map[string]int{"4000": fpbxQueueID, "4001": fpbxLocalQueueID, "6000": fpbxGroupID},
		recordingLink: "{{with .Recording}}https://pbx.example.com/monitor/{{.}}{{end}}",
	})
}

// dbNote reads what the FreePBX-shaped dialplan noted for a call.
func dbNote(t *testing.T, family, linkedID string) string {
	t.Helper()
	v, ok, err := pbx.dbGet(family, linkedID)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return ""
	}
	return v
}

func TestFreePBXQueueAnswered(t *testing.T) {
	svc := startFreePBXService(t)
	setAgent(t, "5252", "answer")
	c := placeCall(t, viaFreePBX+"4000").arrived(t)
	svc.waitAccepted(t, 1, 30*time.Second)
	c.waitConnected(t)
	answered := time.Now()
	c.hangUp(t)
	got := svc.waitAccepted(t, 2, 30*time.Second)
	checkRequests(t, got, []wantReq{
		transferred(c, c.LinkedID, fpbxQueueID, "5252", c.Start, answered),
		completed(c.LinkedID, "", answered, time.Now()),
	})
	sessions := finishSessions(t, "", "transfer", "hangup")
	// QGOSUB ran on the queue member's Local channel, not on the phone.
	if len(sessions) > 0 && !strings.HasPrefix(sessions[0].Var("agi_channel"), "Local/5252@from-queue-") {
		t.Errorf("the transfer ran on %s, want the queue member's Local/5252@from-queue-... channel", sessions[0].Var("agi_channel"))
	}
}

func TestFreePBXQueueAbandoned(t *testing.T) {
	svc := startFreePBXService(t)
	callerGivesUp(t, svc, viaFreePBX+"4000", fpbxQueueID)
	finishSessions(t, "", "hangup")
	if n := len(svc.fake.Requests()); n != 1 {
		t.Errorf("Movidesk got %d requests, want only the canceled call:\n%s", n, describe(svc.fake.Requests()))
	}
}

func TestFreePBXExtensionAnsweredAndRecorded(t *testing.T) {
	// The extension records its calls from outside (FreePBX's policy
	// "force"); the link names FreePBX's own file.
	pbx.mustCLI(t, "database put AMPUSER 5252/recording/in/external force")
	t.Cleanup(func() { pbx.mustCLI(t, "database del AMPUSER 5252/recording/in/external") })
	svc := startFreePBXService(t)
	setAgent(t, "5252", "answer")
	c := placeCall(t, viaFreePBX+"5252").arrived(t)
	svc.waitAccepted(t, 1, 30*time.Second)
	c.waitConnected(t)
	answered := time.Now()
	var file string
	waitFor(t, 30*time.Second, "FreePBX's recording of "+c.caller, func() (bool, error) {
		monitor := pbx.host(pbx.dir + "/spool/monitor")
		m, err := filepath.Glob(monitor + "/*/*/*/in-5252-" + c.caller + "-*.wav")
		if len(m) == 1 {
			file = strings.TrimPrefix(m[0], monitor+"/")
		}
		return len(m) == 1, err
	})
	if want := regexp.MustCompile(`^\d{4}/\d\d/\d\d/in-5252-` + c.caller + `-\d{8}-\d{6}-` + regexp.QuoteMeta(c.UniqueID) + `\.wav$`); !want.MatchString(file) {
		t.Errorf("recording %q is not named as FreePBX names it (%s)", file, want)
	}
	c.agentHangsUp(t, "5252")
	got := svc.waitAccepted(t, 2, 30*time.Second)
	checkRequests(t, got, []wantReq{
		transferred(c, c.LinkedID, defaultQueueID, "5252", c.Start, answered),
		completed(c.LinkedID, "https://pbx.example.com/monitor/"+file, answered, time.Now()),
	})
	finishSessions(t, "", "transfer", "hangup")
	// FreePBX's b() on the Dial line still ran on the agent's leg.
	if ch := dbNote(t, "e2e-sipheaders", c.LinkedID); !strings.HasPrefix(ch, "PJSIP/5252-") {
		t.Errorf("FreePBX's b(func-apply-sipheaders) ran on %q, want the agent's PJSIP/5252-... leg", ch)
	}
}

// FreePBX names the recording after the caller's number, which the caller
// chooses: a comma in it must not split AGI()'s arguments into an account=
// of the caller's making. The recording name arrives whole in the link.
func TestFreePBXRecordingNamedWithACommaArrivesWhole(t *testing.T) {
	pbx.mustCLI(t, "database put AMPUSER 5252/recording/in/external force")
	t.Cleanup(func() { pbx.mustCLI(t, "database del AMPUSER 5252/recording/in/external") })
	svc := startFreePBXService(t)
	setAgent(t, "5252", "answer")
	c := newCall(viaFreePBX + "5252")
	number := c.caller + ",account=x,id=y"
	pbx.mustCLI(t, "database put e2e-callerid "+c.caller+" "+number)
	t.Cleanup(func() { pbx.mustCLI(t, "database del e2e-callerid "+c.caller) })
	if err := c.originate(); err != nil {
		t.Fatal(err)
	}
	c.arrived(t)
	svc.waitAccepted(t, 1, 30*time.Second)
	c.waitConnected(t)
	answered := time.Now()
	c.hangUp(t)
	got := svc.waitAccepted(t, 2, 30*time.Second)
	caller := *c
	caller.caller = number // as Movidesk sees it
	link := ""
	if len(got) == 2 {
		link = got[1].Query.Get("link")
	}
	// FreePBX's name, each path segment escaped: the comma as %2C.
	want := regexp.MustCompile(`^https://pbx\.example\.com/monitor/\d{4}/\d\d/\d\d/in-5252-` + c.caller +
		`%2Caccount=x%2Cid=y-\d{8}-\d{6}-` + regexp.QuoteMeta(c.UniqueID) + `\.wav$`)
	if !want.MatchString(link) {
		t.Errorf("the completed call's link is %q, want FreePBX's recording name whole (%s)", link, want)
	}
	checkRequests(t, got, []wantReq{
		transferred(&caller, c.LinkedID, defaultQueueID, "5252", c.Start, answered),
		completed(c.LinkedID, link, answered, time.Now()),
	})
	finishSessions(t, "", "transfer", "hangup")
}

func TestFreePBXExtensionNotAnswered(t *testing.T) {
	svc := startFreePBXService(t)
	callerGivesUp(t, svc, viaFreePBX+"5252", defaultQueueID)
	finishSessions(t, "", "hangup")
}

func TestFreePBXRingGroupAnsweredBySecondMember(t *testing.T) {
	// Hunt: 5252 rings out (RG_RINGTIME), then 5253 answers. The hook runs
	// before each member's Dial and must wrap FreePBX's U() once.
	svc := startFreePBXService(t)
	setAgent(t, "5252", "ring")
	setAgent(t, "5253", "answer")
	c := placeCall(t, viaFreePBX+"6000").arrived(t)
	c.agentPhone(t, "5252")
	svc.waitAccepted(t, 1, 30*time.Second)
	c.waitConnected(t)
	answered := time.Now()
	c.hangUp(t)
	got := svc.waitAccepted(t, 2, 30*time.Second)
	checkRequests(t, got, []wantReq{
		transferred(c, c.LinkedID, fpbxGroupID, "5253", c.Start, answered),
		completed(c.LinkedID, "", answered, time.Now()),
	})
	finishSessions(t, "", "transfer", "hangup")
	// FreePBX's own U(macro-auto-blkvm) and b() still ran on the answering leg.
	if ch := dbNote(t, "e2e-blkvm", c.LinkedID); !strings.HasPrefix(ch, "PJSIP/5253-") {
		t.Errorf("FreePBX's U(macro-auto-blkvm) ran on %q, want the answering PJSIP/5253-... leg", ch)
	}
	if ch := dbNote(t, "e2e-sipheaders", c.LinkedID); !strings.HasPrefix(ch, "PJSIP/525") {
		t.Errorf("FreePBX's b(func-apply-sipheaders) ran on %q, want an agent's PJSIP leg", ch)
	}
}

func TestFreePBXQueueLocalMember(t *testing.T) {
	// Queue 4001 rings Local/5252@from-queue/n and Local/5253@from-queue/n;
	// behind each, FreePBX dials the phone with dial-one and its predial
	// hook. 5253 answers: one transfer, agent 5253, from the Local channel,
	// and FreePBX's U(macro-auto-blkvm) on the phone's leg untouched.
	svc := startFreePBXService(t)
	setAgent(t, "5252", "ring")
	// Both ring at once: 5253 answers once 5252's phone rang (behind its
	// Local channel, FreePBX takes a while to dial it).
	setAgent(t, "5253", "after:5252")
	c := placeCall(t, viaFreePBX+"4001").arrived(t)
	c.agentPhone(t, "5252")
	svc.waitAccepted(t, 1, 30*time.Second)
	c.waitConnected(t)
	answered := time.Now()
	c.hangUp(t)
	got := svc.waitAccepted(t, 2, 30*time.Second)
	checkRequests(t, got, []wantReq{
		transferred(c, c.LinkedID, fpbxLocalQueueID, "5253", c.Start, answered),
		completed(c.LinkedID, "", answered, time.Now()),
	})
	sessions := finishSessions(t, "", "transfer", "hangup")
	if len(sessions) > 0 && !strings.HasPrefix(sessions[0].Var("agi_channel"), "Local/5253@from-queue-") {
		t.Errorf("the transfer ran on %s, want the queue member's Local/5253@from-queue-... channel", sessions[0].Var("agi_channel"))
	}
	if n := len(svc.fake.Requests()); n != 2 {
		t.Errorf("Movidesk got %d requests, want the transfer and the completion only:\n%s", n, describe(svc.fake.Requests()))
	}
	if ch := dbNote(t, "e2e-blkvm", c.LinkedID); !strings.HasPrefix(ch, "PJSIP/5253-") {
		t.Errorf("FreePBX's U(macro-auto-blkvm) ran on %q, want the phone's PJSIP/5253-... leg", ch)
	}
}

func TestFreePBXAgentPassesCallToColleague(t *testing.T) {
	// 5252 answers a call to its extension and transfers it (SIP REFER,
	// into from-internal) to 5253, who answers and later hangs up.
	passCallToColleague(t, startFreePBXService(t), viaFreePBX+"5252")
	finishSessions(t, "", "transfer", "transfer", "hangup")
}

// confLines is a dialplan file without its comments and blank lines.
func confLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, ";") {
			out = append(out, l)
		}
	}
	return out
}

func TestFreePBXMacroVariantDiffersOnlyInHookEnds(t *testing.T) {
	// Asterisk 22 has no Macro(), so the FreePBX 16 file cannot run here:
	// it must be the FreePBX 17 file, which does, with MacroExit() ending
	// the three predial hooks that FreePBX 16 calls with Macro().
	gosub := confLines(t, "../dialplan-examples/freepbx/extensions_custom.conf")
	macro := confLines(t, "../dialplan-examples/freepbx/extensions_custom-macro.conf")
	hooks := map[string]bool{"[macro-dialout-one-predial-hook]": true, "[macro-dial-ringall-predial-hook]": true, "[macro-dial-hunt-predial-hook]": true}
	var want []string
	ctx, ends := "", 0
	for _, l := range gosub {
		if strings.HasPrefix(l, "[") {
			ctx = l
		}
		if hooks[ctx] && l == "same => n,Return()" {
			l = "same => n,MacroExit()"
			ends++
		}
		want = append(want, l)
	}
	if ends != len(hooks) {
		t.Errorf("%d predial hooks end in Return() in extensions_custom.conf, want %d", ends, len(hooks))
	}
	if got := strings.Join(macro, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("extensions_custom-macro.conf is not extensions_custom.conf with MacroExit() ending the predial hooks:\n got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

func TestFreePBXFallbackWritesTheExamplesSpoolLine(t *testing.T) {
	// The snippet carries its own copy of movidesk-fallback: the same line
	// movidesk-agi imports.
	line := func(path string) string {
		for _, l := range confLines(t, path) {
			if strings.Contains(l, "Set(FILE(") {
				return l
			}
		}
		t.Fatalf("%s writes no spool line", path)
		return ""
	}
	if a, b := line("../dialplan-examples/extensions-movidesk.conf"), line("../dialplan-examples/freepbx/extensions_custom.conf"); a != b {
		t.Errorf("the FreePBX snippet's spool line differs from extensions-movidesk.conf's:\n%s\n%s", b, a)
	}
}
