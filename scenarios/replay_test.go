package scenarios

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// replayFrames are a client SYN and its ACK with data, as raw IPv4
// frames, with their capture times.
func replayFrames(t *testing.T) ([][]byte, []time.Time) {
	t.Helper()
	var frames [][]byte
	for i, payload := range []string{"", "GET / HTTP/1.0\r\n\r\n"} {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: []byte{192, 0, 2, 50}, DstIP: []byte{203, 0, 113, 80}}
		tcp := &layers.TCP{SrcPort: 51000, DstPort: 80, Seq: 1000 + uint32(i), SYN: i == 0, ACK: i == 1, Window: 64240}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			ip, tcp, gopacket.Payload(payload)); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, buf.Bytes())
	}
	t0 := time.Unix(1700000000, 123456000)
	return frames, []time.Time{t0, t0.Add(250 * time.Millisecond)}
}

// writeCapture writes frames as a pcap (ng false) or pcapng file.
func writeCapture(t *testing.T, ng bool, frames [][]byte, times []time.Time) []byte {
	t.Helper()
	var out bytes.Buffer
	var write func(gopacket.CaptureInfo, []byte) error
	var flush func() error
	if ng {
		w, err := pcapgo.NewNgWriter(&out, layers.LinkTypeRaw)
		if err != nil {
			t.Fatal(err)
		}
		write, flush = w.WritePacket, w.Flush
	} else {
		w := pcapgo.NewWriter(&out)
		if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
			t.Fatal(err)
		}
		write, flush = w.WritePacket, func() error { return nil }
	}
	for i, f := range frames {
		if err := write(gopacket.CaptureInfo{Timestamp: times[i], CaptureLength: len(f), Length: len(f)}, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// readCapture reads every frame of a capture through packetSource and
// decodes it.
func readCapture(t *testing.T, file []byte) ([]Packet, []time.Time) {
	t.Helper()
	next, err := packetSource(bytes.NewReader(file))
	if err != nil {
		t.Fatalf("packetSource: %v", err)
	}
	var pkts []Packet
	var times []time.Time
	for {
		f, ts, err := next()
		if errors.Is(err, io.EOF) {
			return pkts, times
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		p, ok := f.decode()
		if !ok {
			t.Fatalf("frame %d does not decode as TCP", len(pkts))
		}
		pkts = append(pkts, p)
		times = append(times, ts)
	}
}

// TestPacketSourcePcapng checks that a pcapng capture reads as the same
// packets, with the same times, as the pcap capture of the same frames,
// and that both read as what was written.
func TestPacketSourcePcapng(t *testing.T) {
	frames, times := replayFrames(t)
	pcap, pcapng := writeCapture(t, false, frames, times), writeCapture(t, true, frames, times)
	if !bytes.HasPrefix(pcapng, pcapngMagic) || bytes.HasPrefix(pcap, pcapngMagic) {
		t.Fatalf("the writers wrote unexpected magics: pcap %x, pcapng %x", pcap[:4], pcapng[:4])
	}
	p1, t1 := readCapture(t, pcap)
	p2, t2 := readCapture(t, pcapng)
	if len(p1) != len(frames) || len(p2) != len(frames) {
		t.Fatalf("read %d (pcap) and %d (pcapng) packets, want %d", len(p1), len(p2), len(frames))
	}
	for i := range frames {
		if !t1[i].Equal(times[i]) || !t2[i].Equal(times[i]) {
			t.Errorf("packet %d: times %v (pcap) and %v (pcapng), want %v", i, t1[i], t2[i], times[i])
		}
		a, b := p1[i], p2[i]
		if a.Src != b.Src || a.Dst != b.Dst || a.Seq != b.Seq || a.Flags != b.Flags || !bytes.Equal(a.Payload, b.Payload) {
			t.Errorf("packet %d: pcap %+v, pcapng %+v", i, a, b)
		}
		if a.Dst.String() != "203.0.113.80:80" || (i == 0) != (a.Flags&FlagSYN != 0) {
			t.Errorf("packet %d: %+v, not the frame written", i, a)
		}
	}
	if string(p2[1].Payload) != "GET / HTTP/1.0\r\n\r\n" {
		t.Errorf("payload %q", p2[1].Payload)
	}
}

// TestPacketSourceRejects checks the errors for files that are neither
// format and for a record over the cap.
func TestPacketSourceRejects(t *testing.T) {
	if _, err := packetSource(strings.NewReader("not a capture at all, but long enough")); err == nil ||
		!strings.Contains(err.Error(), "not a pcap or pcapng file") {
		t.Errorf("text file: err = %v", err)
	}
	if _, err := packetSource(bytes.NewReader(pcapngMagic)); err == nil {
		t.Errorf("truncated pcapng: no error")
	}
	big := make([]byte, maxPcapRecord+1)
	for _, ng := range []bool{false, true} {
		file := writeCapture(t, ng, [][]byte{big}, []time.Time{time.Unix(1, 0)})
		next, err := packetSource(bytes.NewReader(file))
		if err != nil {
			t.Fatalf("ng=%v: %v", ng, err)
		}
		// pcapgo refuses a pcap record over the snap length itself; the
		// pcapng reader leaves it to checkRecord.
		if _, _, err := next(); err == nil {
			t.Errorf("ng=%v: record of %d bytes read, want an error", ng, len(big))
		}
	}
}
