package cdr_test

import (
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cdr"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func TestExtension(t *testing.T) {
	for ch, want := range map[string]string{
		"PJSIP/201-0000001a":              "201",
		"SIP/201-0000001a":                "201",
		"Local/201@from-queue-00000003;1": "201",
		"Local/201@from-queue-00000003;2": "201",
		"PJSIP/trunk-provider-0000000b":   "trunk-provider",
		"IAX2/office":                     "office",
		"":                                "",
		"garbage":                         "",
	} {
		if got := cdr.Extension(ch); got != want {
			t.Errorf("Extension(%q) = %q, want %q", ch, got, want)
		}
	}
}

func TestUnsuffixed(t *testing.T) {
	for ch, want := range map[string]string{
		"PJSIP/trunk-00000010":            "PJSIP/trunk",
		"Local/201@from-queue-00000003;2": "Local/201@from-queue",
		"IAX2/office":                     "IAX2/office",
	} {
		if got := cdr.Unsuffixed(ch); got != want {
			t.Errorf("Unsuffixed(%q) = %q, want %q", ch, got, want)
		}
	}
}

func TestSummarize(t *testing.T) {
	const trunk = "PJSIP/trunk-00000010"
	for _, tc := range []struct {
		name string
		rows []cdr.Record
		want cdr.Call
	}{{
		// FreePBX: Answer() before Queue(), members are Local channels;
		// 201 does not answer, 202 does. The Local halves' rows, and an
		// ANSWERED row without Party B, name no agent.
		name: "a queue of Local members",
		rows: []cdr.Record{
			{Channel: "Local/202@from-queue-00000005;2", DstChannel: "PJSIP/202-00000006", Start: at(20), Answer: at(24), End: at(200), Disposition: "ANSWERED", LinkedID: "L", Sequence: 6},
			{Channel: trunk, DstChannel: "Local/201@from-queue-00000003;1", LastApp: "Queue", LastData: "400,t,,,300", Start: at(2), Answer: at(2), End: at(20), Disposition: "NO ANSWER", Src: "11987654321", DContext: "ext-queues", UniqueID: "U", LinkedID: "L", Sequence: 3},
			{Channel: trunk, LastApp: "Answer", Start: at(0), Answer: at(1), End: at(2), Disposition: "ANSWERED", Src: "11987654321", DContext: "from-pstn", DID: "551130000000", UniqueID: "U", LinkedID: "L", Sequence: 2},
			{Channel: "Local/201@from-queue-00000003;2", DstChannel: "PJSIP/201-00000004", Start: at(2), End: at(20), Disposition: "NO ANSWER", LinkedID: "L", Sequence: 4},
			{Channel: trunk, DstChannel: "Local/202@from-queue-00000005;1", LastApp: "Queue", LastData: "400,t,,,300", Start: at(20), Answer: at(25), End: at(200), Disposition: "ANSWERED", Src: "11987654321", DContext: "ext-queues", UniqueID: "U", LinkedID: "L", Sequence: 5, RecordingFile: "q-400-11987654321-20261207-100000-U.wav"},
		},
		want: cdr.Call{ID: "L", Channel: trunk, UniqueID: "U", Context: "from-pstn", Src: "11987654321", DID: "551130000000",
			Started: at(0), Ended: at(200), Answered: at(25), AgentChannel: "Local/202@from-queue-00000005;1", Agent: "202",
			Queue: "400", Recording: "q-400-11987654321-20261207-100000-U.wav", Rows: 5},
	}, {
		name: "abandoned in the queue",
		rows: []cdr.Record{
			{Channel: trunk, DstChannel: "PJSIP/201-00000004", LastApp: "Queue", LastData: "sales", Start: at(0), End: at(30), Disposition: "NO ANSWER", Src: "5511", DContext: "from-trunk", LinkedID: "L"},
			{Channel: trunk, DstChannel: "PJSIP/202-00000005", LastApp: "Queue", LastData: "sales", Start: at(0), End: at(30), Disposition: "BUSY", Src: "5511", DContext: "from-trunk", LinkedID: "L", Sequence: 1},
		},
		want: cdr.Call{ID: "L", Channel: trunk, Context: "from-trunk", Src: "5511", Started: at(0), Ended: at(30), Queue: "sales", Rows: 2},
	}, {
		// 201's phone answers as the caller hangs up: the Local half's
		// row is ANSWERED, the caller was never bridged to it.
		name: "abandoned as a member answered",
		rows: []cdr.Record{
			{Channel: trunk, DstChannel: "Local/201@from-queue-00000003;1", LastApp: "Queue", LastData: "400", Start: at(0), End: at(30), Disposition: "NO ANSWER", LinkedID: "L"},
			{Channel: "Local/201@from-queue-00000003;2", DstChannel: "PJSIP/201-00000004", Start: at(0), Answer: at(30), End: at(30), Disposition: "ANSWERED", LinkedID: "L", Sequence: 1},
		},
		want: cdr.Call{ID: "L", Channel: trunk, Started: at(0), Ended: at(30), Queue: "400", Rows: 2},
	}, {
		// B answers, then sends the caller to C: the call was B's.
		name: "a blind transfer to a colleague",
		rows: []cdr.Record{
			{Channel: trunk, DstChannel: "PJSIP/201-00000004", LastApp: "Dial", Start: at(0), Answer: at(5), End: at(60), Disposition: "ANSWERED", Src: "5511", DContext: "from-pstn", LinkedID: "L", Sequence: 1},
			{Channel: trunk, DstChannel: "PJSIP/202-00000007", LastApp: "Dial", Start: at(60), Answer: at(70), End: at(300), Disposition: "ANSWERED", Src: "5511", DContext: "from-internal-xfer", LinkedID: "L", Sequence: 2},
		},
		want: cdr.Call{ID: "L", Channel: trunk, Context: "from-pstn", Src: "5511", Started: at(0), Ended: at(300), Answered: at(5),
			AgentChannel: "PJSIP/201-00000004", Agent: "201", Rows: 2},
	}, {
		// FreePBX's table has no answer or end column: the answer is the
		// end less the billed seconds.
		name: "FreePBX's columns",
		rows: []cdr.Record{
			{Channel: trunk, DstChannel: "PJSIP/201-00000004", LastApp: "Dial", Start: at(0), Duration: 100 * time.Second, Billed: 90 * time.Second, Disposition: "ANSWERED", LinkedID: "L"},
		},
		want: cdr.Call{ID: "L", Channel: trunk, Started: at(0), Ended: at(100), Answered: at(10), AgentChannel: "PJSIP/201-00000004", Agent: "201", Rows: 1},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := cdr.Summarize(tc.rows)
			if !ok {
				t.Fatal("no call")
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	if _, ok := cdr.Summarize(nil); ok {
		t.Error("no rows made a call")
	}
}

func TestExtensionFromAsteriskNames(t *testing.T) {
	cases := map[string]string{
		"PJSIP/5252":                   "5252",
		"PJSIP/5252-0000002a":          "5252",
		"5252@agents":                  "5252",
		"5252":                         "5252",
		"Local/5252@agents-00000001;1": "5252",
		"Local/5252@agents/n":          "5252",
		"5252@from-queue/n":            "5252", // DIALEDPEERNUMBER of a Local/5252@from-queue/n queue member
		"SIP/5252/n":                   "5252",
		"SIP/agent-ana-0000000f":       "agent-ana",
		"PJSIP/agent-12":               "agent-12", // no channel suffix: the name is kept whole
		"":                             "",
	}
	for in, want := range cases {
		if got := cdr.ExtensionOf(in); got != want {
			t.Errorf("ExtensionOf(%q) = %q, want %q", in, got, want)
		}
	}
}
