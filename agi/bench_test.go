package agi_test

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/movidesk-agi/movidesk-agi/agi"
)

// BenchmarkSession measures one whole session over loopback: connect, the
// captured environment, three GET VARIABLEs and one SET VARIABLE, close.
func BenchmarkSession(b *testing.B) {
	srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
		s.GetVariable(context.Background(), "CHANNEL(linkedid)")
		s.GetVariable(context.Background(), "CDR(start,u)")
		s.GetVariable(context.Background(), "CALLERID(num)")
		s.SetVariable(context.Background(), "MOVIDESK_STATUS", "sent")
	})}
	addr := start(b, srv)
	replies := []string{
		"200 result=1 (1795524649.1)\n",
		"200 result=1 (1795524751.608969)\n",
		"200 result=1 (5511999990000)\n",
		"200 result=1\n",
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReader(c)
		if _, err := c.Write([]byte(capturedEnv)); err != nil {
			b.Fatal(err)
		}
		for _, reply := range replies {
			if _, err := r.ReadSlice('\n'); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Write([]byte(reply)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := r.ReadSlice('\n'); err == nil {
			b.Fatal("server sent more than expected")
		}
		c.Close()
	}
}

func BenchmarkReadEnv(b *testing.B) {
	sr := strings.NewReader(capturedEnv)
	br := bufio.NewReader(sr)
	b.ReportAllocs()
	b.SetBytes(int64(len(capturedEnv)))
	for b.Loop() {
		sr.Reset(capturedEnv)
		br.Reset(sr)
		if _, err := agi.ReadEnv(br, 256, 16384); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseReply(b *testing.B) {
	for _, line := range []string{"200 result=1 (1795524649.1)", "200 result=-1 (hangup) endpos=1234"} {
		b.Run(strings.Fields(line)[1], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := agi.ParseReply(line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkQuote(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		agi.Quote(`a "quoted" value \ with backslash`)
	}
}
