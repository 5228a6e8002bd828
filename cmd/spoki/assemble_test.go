package main

import (
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// assembleExampleLogs is the repository's copy of the example logs.
var assembleExampleLogs = filepath.Join("..", "..", "records", "testdata", "spoki-example-logs")

// gzLines returns the lines of the gzip files.
func gzLines(t *testing.T, files ...string) []string {
	t.Helper()
	var lines []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	return lines
}

// TestAssembleKafka runs `spoki assemble --kafka` on the example logs
// against a kfake broker: the files are written as without --kafka, and
// the topic (the original's by default, or --kafka-topic) holds their lines,
// one message each, without a key.
func TestAssembleKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := strings.Join(c.ListenAddrs(), ",")
	for _, tc := range []struct {
		name, topic string
		flags       []string
	}{
		{"default topic", "cse2.malware.events.test", nil},
		{"own topic", "lab.assembled", []string{"--kafka-topic", "lab.assembled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			args := append([]string{"--start", "2021-10-13T21", "--tag", "test", "--flush-at-eof", "--out", out,
				"--kafka", brokers}, tc.flags...)
			if err := assembleMain(context.Background(), append(args, assembleExampleLogs)); err != nil {
				t.Fatal(err)
			}
			files, _ := filepath.Glob(filepath.Join(out, "test-events-*.json.gz"))
			if len(files) != 2 {
				t.Fatalf("files %v, want the two batches", files)
			}
			want := gzLines(t, files...)
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(tc.topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			got := map[string]int{}
			n := 0
			for n < len(want) && ctx.Err() == nil {
				cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
					if r.Key != nil {
						t.Errorf("record with key %q", r.Key)
					}
					got[string(r.Value)]++
					n++
				})
			}
			if n != len(want) {
				t.Fatalf("topic %s holds %d records, the files %d", tc.topic, n, len(want))
			}
			for _, l := range want {
				if got[l]--; got[l] < 0 {
					t.Fatalf("file line missing from the topic (or there once too often): %s", l)
				}
			}
		})
	}
}

func TestAssembleKafkaFlags(t *testing.T) {
	base := []string{"--start", "2021-10-13T21", "--tag", "test", "--out", t.TempDir()}
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--kafka-topic", "x"}, "--kafka-topic needs --kafka"},
		{[]string{"--kafka", "127.0.0.1:9", "--kafka-timeout", "500ms"}, "at least 1s"},
		{[]string{"--kafka", "127.0.0.1:9", "--kafka-topic", "a/b"}, "topic"},
		{[]string{"--kafka", ","}, "no Kafka brokers"},
	} {
		err := assembleMain(context.Background(), append(append(append([]string{}, base...), c.flags...), assembleExampleLogs))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.flags, err, c.want)
		}
	}
}
