package tunecho

import (
	"encoding/binary"
	"testing"
)

// syn returns an IPv4 SYN 192.0.2.1:40000 → 198.51.100.7:80 with seq
// 1000 (checksums left zero: synAckInPlace computes them).
func syn() []byte {
	b := make([]byte, 40)
	b[0], b[8], b[9] = 0x45, 255, 6
	binary.BigEndian.PutUint16(b[2:], 40)
	copy(b[12:16], []byte{192, 0, 2, 1})
	copy(b[16:20], []byte{198, 51, 100, 7})
	t := b[20:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 80)
	binary.BigEndian.PutUint32(t[4:], 1000)
	t[12], t[13] = 5<<4, 0x02
	return b
}

// TestSYNAckInPlace checks the SYN-ACK the echo writes back: addresses and
// ports swapped, SYN|ACK acking seq+1, and both checksums valid.
func TestSYNAckInPlace(t *testing.T) {
	b := syn()
	if !synAckInPlace(b) {
		t.Fatal("synAckInPlace(SYN) = false")
	}
	tcp := b[20:]
	if string(b[12:16]) != string([]byte{198, 51, 100, 7}) || string(b[16:20]) != string([]byte{192, 0, 2, 1}) {
		t.Errorf("addresses %v → %v, want swapped", b[12:16], b[16:20])
	}
	if sp, dp := binary.BigEndian.Uint16(tcp[0:]), binary.BigEndian.Uint16(tcp[2:]); sp != 80 || dp != 40000 {
		t.Errorf("ports %d → %d, want 80 → 40000", sp, dp)
	}
	if tcp[13] != 0x12 || binary.BigEndian.Uint32(tcp[8:]) != 1001 {
		t.Errorf("flags %#x ack %d, want 0x12 and 1001", tcp[13], binary.BigEndian.Uint32(tcp[8:]))
	}
	if s := sum16(b[:20], 0); s != 0xffff {
		t.Errorf("IPv4 header checksum does not verify: sum %#x", s)
	}
	var ph [12]byte
	copy(ph[0:8], b[12:20])
	ph[9] = 6
	binary.BigEndian.PutUint16(ph[10:], uint16(len(tcp)))
	if s := sum16(tcp, sum16(ph[:], 0)); s != 0xffff {
		t.Errorf("TCP checksum does not verify: sum %#x", s)
	}
	ack := syn()
	ack[33] = 0x10
	if synAckInPlace(ack) {
		t.Error("synAckInPlace(ACK) = true, want false")
	}
}
