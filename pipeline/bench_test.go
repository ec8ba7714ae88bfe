package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"runtime"
	"testing"
)

// BenchmarkAccept10k measures committing one 10,000-record push (records with random,
// UUID-like ids, as partners send) on each backend: the work a 202 waits for.
func BenchmarkAccept10k(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			h := newHarness(b, be, 1000)
			env := Envelope{Format: "activity"}
			for range 10000 {
				var id [16]byte
				_, _ = rand.Read(id[:])
				env.Records = append(env.Records, []byte(`{"id":"`+hex.EncodeToString(id[:])+`","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"a@b.c","contact":"Jane Doe","direction":"inbound"}`))
			}
			b.ResetTimer()
			for range b.N {
				if _, err := h.p.Accept(context.Background(), Submission{ClientID: "c", Envelope: env}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAccept1 measures committing 1-record pushes from 32 concurrent clients on each
// backend (the router is not running: intake alone): the writer's cost per small push.
func BenchmarkAccept1(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			h := newHarness(b, be, 1000)
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var id [16]byte
					_, _ = rand.Read(id[:])
					env := Envelope{Format: "activity", Records: [][]byte{[]byte(`{"id":"` + hex.EncodeToString(id[:]) +
						`","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"a@b.c","contact":"Jane Doe","direction":"inbound"}`)}}
					if _, err := h.p.Accept(context.Background(), Submission{ClientID: "c", Envelope: env}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
