package kafka

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spoki-telescope/spoki/records"
)

// synEvent is the part of a `syn` event (records.AppendSYNEvent) that the
// detector needs.
type synEvent struct {
	Timestamp records.EventTime `json:"timestamp"`
	EventType string            `json:"event_type"`
	SrcIP     string            `json:"src_ip"`
	SrcPort   uint16            `json:"src_port"`
	DestIP    string            `json:"dest_ip"`
	DestPort  uint16            `json:"dest_port"`
	UserID    uint32            `json:"userid"`
	TCP       struct {
		Seq       uint32   `json:"seq"`
		Window    uint16   `json:"window"`
		TTL       uint8    `json:"ttl"`
		IPID      uint16   `json:"ipid"`
		Options   []string `json:"options"`
		Truncated bool     `json:"options_truncated"`
		MSS       uint16   `json:"mss"`
		WScale    *int8    `json:"wscale"`
	} `json:"tcp"`
}

// errNotSYN is a record of the topic that is no `syn` event.
var errNotSYN = errors.New("not a syn event")

// optionKinds are the option names of the `syn` event.
var optionKinds = map[string]uint8{"eol": 0, "nop": 1, "mss": 2, "wscale": 3, "sack_perm": 4, "sack": 5, "timestamp": 8}

// parseSYN decodes a `syn` event: the fast way if it can
// (parseSYNFast), else with encoding/json, which decides.
func parseSYN(line []byte, p *records.Packet) error {
	if parseSYNFast(line, p) == nil {
		return nil
	}
	return parseSYNJSON(line, p)
}

// parseSYNJSON decodes a `syn` event into the packet record it was made from,
// as far as the detector reads it: the flow, time, userid (non-zero only
// for an answered SYN, which is what Probed means here: the front end
// gives every SYN-ACK a userid, and a SYN over the SYN-ACK limit gets
// none) and the TCP fields the irregular rules and the fingerprint use.
func parseSYNJSON(line []byte, p *records.Packet) error {
	var e synEvent
	if err := json.Unmarshal(line, &e); err != nil {
		return err
	}
	if e.EventType != records.EventSYN {
		return errNotSYN
	}
	src, err := netip.ParseAddr(e.SrcIP)
	if err != nil {
		return err
	}
	dst, err := netip.ParseAddr(e.DestIP)
	if err != nil {
		return err
	}
	*p = records.Packet{
		Time: e.Timestamp.Time, Src: src, Dst: dst, SrcPort: e.SrcPort, DstPort: e.DestPort,
		Proto: records.ProtoTCP, Flags: records.FlagSYN, Seq: e.TCP.Seq, Window: e.TCP.Window,
		TTL: e.TCP.TTL, IPID: e.TCP.IPID, MSS: e.TCP.MSS, WScale: -1, OptionsTruncated: e.TCP.Truncated,
		UserID: e.UserID, Probed: e.UserID != 0,
	}
	if e.TCP.WScale != nil {
		p.WScale = *e.TCP.WScale
	}
	for _, name := range e.TCP.Options {
		if int(p.NumOptions) == records.MaxOptions {
			p.OptionsTruncated = true
			break
		}
		k, ok := optionKinds[name]
		if !ok {
			n, err := strconv.ParseUint(strings.TrimPrefix(name, "opt_"), 10, 8)
			if err != nil || !strings.HasPrefix(name, "opt_") {
				return errors.New("bad option " + strconv.Quote(name))
			}
			k = uint8(n)
		}
		p.Options[p.NumOptions] = k
		p.NumOptions++
	}
	return nil
}
