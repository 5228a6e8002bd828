package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/kafkasink"
)

// TestTwophaseCommand runs `spoki twophase` against a kfake cluster: a
// telescope publishes an answered irregular SYN and, 20 seconds of packet
// time later, a regular SYN of the same source to the same port, and the
// command publishes their two_phase event. Bad flags are refused.
func TestTwophaseCommand(t *testing.T) {
	for _, args := range [][]string{
		{}, {"--kafka", "127.0.0.1:1"}, {"--kafka", "127.0.0.1:1", "--group", "g", "--phase-memory", "1KiB"},
		{"--kafka", "127.0.0.1:1", "--group", "g", "--kafka-sasl", "GSSAPI"},
	} {
		if err := twophaseMain(context.Background(), args); err == nil {
			t.Errorf("twophase %v: no error", args)
		}
	}
	out := kafkasink.Topic("", "twophase", "two_phase")
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, kafkasink.Topic("", "lab", "syn"), out))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addrs := c.ListenAddrs()
	pub, err := kafkasink.New(kafkasink.Config{Brokers: addrs, Tag: "lab", Host: "sensor-7"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-30 * time.Second)
	src, dst := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("198.51.100.80")
	one := records.Packet{Time: now, Src: src, Dst: dst, SrcPort: 41000, DstPort: 80, Proto: records.ProtoTCP,
		Flags: records.FlagSYN, Seq: 1, TTL: 241, IPID: 54321, Window: 1024, WScale: -1, Probed: true, UserID: 5}
	two := records.Packet{Time: now.Add(20 * time.Second), Src: src, Dst: dst, SrcPort: 52000, DstPort: 80, Proto: records.ProtoTCP,
		Flags: records.FlagSYN, Seq: 2, TTL: 52, IPID: 7, Window: 64240, MSS: 1460, WScale: 7, Probed: true, UserID: 6,
		Options: [records.MaxOptions]uint8{2, 4, 8, 1, 3}, NumOptions: 5}
	pub.PublishSYN(&one)
	pub.PublishSYN(&two)
	if err := pub.Close(); err != nil || pub.Stats().Published != 2 {
		t.Fatalf("publish: %v, %+v", err, pub.Stats())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- twophaseMain(ctx, []string{"--kafka", strings.Join(addrs, ","), "--group", "g", "--phase-memory", "1MiB", "--log-level", "warn"})
	}()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(out), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	var got []*kgo.Record
	for len(got) == 0 && pctx.Err() == nil {
		got = append(got, cl.PollFetches(pctx).Records()...)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("twophase: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("%d two_phase events, want 1", len(got))
	}
	var e struct {
		EventType string  `json:"event_type"`
		SrcIP     string  `json:"src_ip"`
		DestPort  int     `json:"dest_port"`
		DelayMS   float64 `json:"delay_ms"`
	}
	if err := json.Unmarshal(got[0].Value, &e); err != nil || e.EventType != "two_phase" || e.SrcIP != src.String() ||
		e.DestPort != 80 || e.DelayMS != 20000 {
		t.Errorf("event %s (%v)", got[0].Value, err)
	}
	if len(got[0].Headers) != 1 || string(got[0].Headers[0].Value) != "sensor-7" {
		t.Errorf("headers %v, want host=sensor-7", got[0].Headers)
	}
}
