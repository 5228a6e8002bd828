package netstack

import "sync/atomic"

// Stats counts what the front end saw and did. Every packet read from the
// TUN increments PacketsIn and then exactly one of SYNACKsSent, Handshakes,
// ToStack, PureResets, ICMPEchoReplies, UDPReplies or one Drop counter;
// nothing is discarded without a count. (A handshake whose front-end ACK the TUN refused counts in
// Handshakes and DropTxError.)
type Stats struct {
	// PacketsIn counts packets read from the TUN.
	PacketsIn atomic.Uint64
	// SYNACKsSent counts SYNs answered with a cookie SYN-ACK.
	SYNACKsSent atomic.Uint64
	// Handshakes counts ACKs with a valid cookie passed to gVisor, each of
	// which becomes a connection.
	Handshakes atomic.Uint64
	// ToStack counts packets of established connections passed to gVisor.
	ToStack atomic.Uint64
	// PureResets counts handshake ACKs with data to pure-mode addresses,
	// answered with a RST by the front end (never passed to gVisor).
	PureResets atomic.Uint64
	// Payloads counts TCP packets carrying data (any verdict).
	Payloads atomic.Uint64
	// ICMPEchoReplies counts echo requests answered with an echo reply;
	// UDPReplies UDP probes answered by their service (reply.go).
	ICMPEchoReplies, UDPReplies atomic.Uint64

	// DropOutside counts packets to addresses outside the prefixes.
	DropOutside atomic.Uint64
	// DropBadCookie counts ACKs whose cookie is invalid or expired.
	DropBadCookie atomic.Uint64
	// DropSYNACK counts SYN-ACK backscatter.
	DropSYNACK atomic.Uint64
	// DropRST counts RST backscatter and RSTs for unknown connections.
	DropRST atomic.Uint64
	// DropStray counts other TCP segments that belong to no connection
	// (FIN or Xmas probes without ACK, ...).
	DropStray atomic.Uint64
	// DropPortZero counts TCP to port 0, which no listener can serve.
	DropPortZero atomic.Uint64
	// DropUDP, DropICMP and DropOtherProto count non-TCP packets, dropped by
	// default.
	DropUDP, DropICMP, DropOtherProto atomic.Uint64
	// DropMalformed counts packets too short or inconsistent to parse.
	DropMalformed atomic.Uint64
	// DropBadChecksum counts TCP packets with a wrong checksum.
	DropBadChecksum atomic.Uint64
	// DropFragment counts IP fragments (the telescope does not reassemble);
	// they are recorded with what they show (records.Packet.Fragment).
	DropFragment atomic.Uint64
	// DropConnLimit counts valid-cookie ACKs refused because MaxConns
	// connections are open.
	DropConnLimit atomic.Uint64
	// DropSourceLimit and DropNetLimit count valid-cookie ACKs refused
	// because their remote address (MaxConnsPerIP) or its /24 or /48
	// (MaxConnsPerNet) holds its share of connections.
	DropSourceLimit, DropNetLimit atomic.Uint64
	// DropListener counts valid-cookie ACKs dropped because no listener
	// could be created for the port.
	DropListener atomic.Uint64
	// DropListenerCap counts valid-cookie ACKs dropped because
	// MaxListeners listeners were open and none was idle.
	DropListenerCap atomic.Uint64
	// DropTxError counts SYN-ACKs (and the front end's ACKs and RSTs of
	// handshake ACKs) the TUN refused to take.
	DropTxError atomic.Uint64
	// DropSYNRateRegular and DropSYNRateIrregular count SYNs left
	// unanswered because their source's SYN-ACK budget for that class
	// (records.Irregular) was spent; they are still recorded.
	DropSYNRateRegular, DropSYNRateIrregular atomic.Uint64
	// DropBadFlags counts segments with flags a listener drops: SYN+FIN,
	// SYN+RST, and no flags at all.
	DropBadFlags atomic.Uint64
	// DropBadSource counts SYNs from an address no reply may go to
	// (unspecified, 0/8, loopback, multicast, broadcast, link-local,
	// IPv4-mapped IPv6).
	DropBadSource atomic.Uint64
	// DropExtHeader counts IPv6 TCP packets behind extension headers that
	// a host would not accept them through (a routing header, an option
	// it must understand, misplaced hop-by-hop options); they are recorded.
	DropExtHeader atomic.Uint64
	// DropICMPRate, DropICMPOff and DropICMPMalformed count echo requests
	// left unanswered: their source's budget was spent, --icmp=off, or the
	// request was too short, had a bad checksum or was longer than the
	// front end's answers may be. DropICMP counts the other ICMP (not an
	// echo request: errors, backscatter).
	DropICMPRate, DropICMPOff, DropICMPMalformed atomic.Uint64
	// DropUDPRate, DropUDPOff, DropUDPMalformed and DropUDPTooLarge count
	// UDP probes of a service of udpreply left unanswered: budget spent,
	// --udp=off, a bad datagram or a request the service does not answer,
	// and an answer that would have been longer than the request. DropUDP
	// counts UDP to the other ports, never answered.
	DropUDPRate, DropUDPOff, DropUDPMalformed, DropUDPTooLarge atomic.Uint64

	// RecordWaits counts TUN reads after which the reader waited for a
	// backlogged sink (Config.RecordWait); RecordWaitsExpired counts the
	// waits that ran the whole RecordWait with the sink still behind.
	RecordWaits, RecordWaitsExpired atomic.Uint64

	// Accepted counts connections handed to the handler.
	Accepted atomic.Uint64
	// AcceptUnknown counts accepted connections the front end had not
	// admitted (they are served, with user id 0).
	AcceptUnknown atomic.Uint64
	// AdmitExpired counts admitted handshakes gVisor never turned into a
	// connection (e.g. its accept queue was full).
	AdmitExpired atomic.Uint64
	// AcceptDuplicate counts connections gVisor accepted a second time for
	// a flow already served (a handshake's data handed back to the listener
	// by a connection closed before gVisor read it): reset, never handed to
	// the handler.
	AcceptDuplicate atomic.Uint64
	// Active is the number of connections being served now.
	Active atomic.Int64
	// Listeners is the number of lazily created listeners open now.
	Listeners atomic.Int64
	// ListenersClosed counts listeners closed once idle.
	ListenersClosed atomic.Uint64
	// AcceptReset counts connections ended at once when accepted because
	// the client's reset had overtaken the handshake's ACK into gVisor.
	AcceptReset atomic.Uint64
	// LingerEvicted counts finished connections whose user id was
	// forgotten before doneLinger because 4 × MaxConns finished since: a
	// late reply of theirs is logged with user id 0.
	LingerEvicted atomic.Uint64
	// Untranslated counts segments passed to an endpoint of gVisor's whose
	// connection the front end no longer knows (its entry expired or was
	// evicted), so without the sequence offset of cookieJar.translate:
	// gVisor finds them out of its window.
	Untranslated atomic.Uint64

	// RepliesOut counts packets gVisor wrote on connections; OutDropped
	// counts what gVisor tried to send that the front end filtered (non-TCP,
	// or from an address outside the prefixes).
	RepliesOut, OutDropped atomic.Uint64

	// TxErrNoBufs, TxErrUnreachable, TxErrDenied and TxErrOther count the
	// front end's batched replies the kernel refused when their batch was
	// sent: no buffer space (ENOBUFS, EAGAIN), no route (ENETUNREACH,
	// EHOSTUNREACH, ...), a firewall (EPERM, EACCES), anything else. Their
	// packets were counted (SYNACKsSent, ...) and their reply rows written
	// when they were queued.
	TxErrNoBufs, TxErrUnreachable, TxErrDenied, TxErrOther atomic.Uint64
}

// Snapshot is a plain copy of Stats. Its tags describe each counter for
// the stats line and the metrics (package stats): every drop adds to the
// line's drops and to spoki_netstack_packets_total{verdict="drop"}.
type Snapshot struct {
	PacketsIn   uint64 `line:"packets_in" metric:"netstack_packets_received_total" help:"Packets read from the TUN."`
	SYNACKsSent uint64 `line:"synacks_out" metric:"netstack_packets_total{verdict=synack}" help:"Packets read from the TUN by verdict: synack (answered with a cookie SYN-ACK), handshake (valid-cookie ACK passed to gVisor), to_stack (segment of an established connection), pure_reset (handshake ACK with data reset by the front end in pure mode), icmp_echo_reply (echo request answered), udp_reply (UDP probe answered by its service), drop (see spoki_netstack_drops_total)."`
	Handshakes  uint64 `line:"handshakes" metric:"netstack_packets_total{verdict=handshake}"`
	ToStack     uint64 `line:"to_stack" metric:"netstack_packets_total{verdict=to_stack}"`
	PureResets  uint64 `line:"pure_resets" metric:"netstack_packets_total{verdict=pure_reset}"`
	Payloads    uint64 `line:"payloads" metric:"netstack_payload_packets_total" help:"TCP packets carrying data, any verdict."`

	ICMPEchoReplies uint64 `line:"icmp_echo_replies" metric:"netstack_packets_total{verdict=icmp_echo_reply}"`
	UDPReplies      uint64 `line:"udp_replies" metric:"netstack_packets_total{verdict=udp_reply}"`

	DropOutside          uint64 `line:"drops drop_outside" metric:"netstack_drops_total{cause=outside} netstack_packets_total{verdict=drop}" help:"Packets dropped by the front end, by cause."`
	DropBadCookie        uint64 `line:"drops drop_bad_cookie" metric:"netstack_drops_total{cause=bad_cookie} netstack_packets_total{verdict=drop}"`
	DropSYNACK           uint64 `line:"drops drop_backscatter" metric:"netstack_drops_total{cause=synack} netstack_packets_total{verdict=drop}"`
	DropRST              uint64 `line:"drops drop_backscatter" metric:"netstack_drops_total{cause=rst} netstack_packets_total{verdict=drop}"`
	DropStray            uint64 `line:"drops drop_stray" metric:"netstack_drops_total{cause=stray} netstack_packets_total{verdict=drop}"`
	DropPortZero         uint64 `line:"drops drop_port_zero" metric:"netstack_drops_total{cause=port_zero} netstack_packets_total{verdict=drop}"`
	DropUDP              uint64 `line:"drops drop_non_tcp" metric:"netstack_drops_total{cause=udp} netstack_packets_total{verdict=drop}"`
	DropICMP             uint64 `line:"drops drop_non_tcp" metric:"netstack_drops_total{cause=icmp} netstack_packets_total{verdict=drop}"`
	DropOtherProto       uint64 `line:"drops drop_non_tcp" metric:"netstack_drops_total{cause=other_proto} netstack_packets_total{verdict=drop}"`
	DropMalformed        uint64 `line:"drops drop_malformed" metric:"netstack_drops_total{cause=malformed} netstack_packets_total{verdict=drop}"`
	DropBadChecksum      uint64 `line:"drops drop_bad_checksum" metric:"netstack_drops_total{cause=bad_checksum} netstack_packets_total{verdict=drop}"`
	DropFragment         uint64 `line:"drops drop_fragment" metric:"netstack_drops_total{cause=fragment} netstack_packets_total{verdict=drop}"`
	DropConnLimit        uint64 `line:"drops drop_conn_limit" metric:"netstack_drops_total{cause=conn_limit} netstack_packets_total{verdict=drop}"`
	DropSourceLimit      uint64 `line:"drops drop_source_limit" metric:"netstack_drops_total{cause=source_limit} netstack_packets_total{verdict=drop}"`
	DropNetLimit         uint64 `line:"drops drop_net_limit" metric:"netstack_drops_total{cause=net_limit} netstack_packets_total{verdict=drop}"`
	DropListener         uint64 `line:"drops drop_listener" metric:"netstack_drops_total{cause=listener} netstack_packets_total{verdict=drop}"`
	DropListenerCap      uint64 `line:"drops drop_listener" metric:"netstack_drops_total{cause=listener_cap} netstack_packets_total{verdict=drop}"`
	DropTxError          uint64 `line:"drops drop_tx_error" metric:"netstack_drops_total{cause=tx_error} netstack_packets_total{verdict=drop}"`
	DropSYNRateRegular   uint64 `line:"drops drop_syn_rate_regular" metric:"netstack_drops_total{cause=syn_rate_regular} netstack_packets_total{verdict=drop}"`
	DropSYNRateIrregular uint64 `line:"drops drop_syn_rate_irregular" metric:"netstack_drops_total{cause=syn_rate_irregular} netstack_packets_total{verdict=drop}"`
	DropBadFlags         uint64 `line:"drops drop_bad_flags" metric:"netstack_drops_total{cause=bad_flags} netstack_packets_total{verdict=drop}"`
	DropBadSource        uint64 `line:"drops drop_bad_source" metric:"netstack_drops_total{cause=bad_source} netstack_packets_total{verdict=drop}"`
	DropExtHeader        uint64 `line:"drops drop_ext_header" metric:"netstack_drops_total{cause=ext_header} netstack_packets_total{verdict=drop}"`
	DropICMPRate         uint64 `line:"drops drop_icmp_rate" metric:"netstack_drops_total{cause=icmp_rate} netstack_packets_total{verdict=drop}"`
	DropICMPOff          uint64 `line:"drops drop_icmp_off" metric:"netstack_drops_total{cause=icmp_off} netstack_packets_total{verdict=drop}"`
	DropICMPMalformed    uint64 `line:"drops drop_icmp_malformed" metric:"netstack_drops_total{cause=icmp_malformed} netstack_packets_total{verdict=drop}"`
	DropUDPRate          uint64 `line:"drops drop_udp_rate" metric:"netstack_drops_total{cause=udp_rate} netstack_packets_total{verdict=drop}"`
	DropUDPOff           uint64 `line:"drops drop_udp_off" metric:"netstack_drops_total{cause=udp_off} netstack_packets_total{verdict=drop}"`
	DropUDPMalformed     uint64 `line:"drops drop_udp_malformed" metric:"netstack_drops_total{cause=udp_malformed} netstack_packets_total{verdict=drop}"`
	DropUDPTooLarge      uint64 `line:"drops drop_udp_too_large" metric:"netstack_drops_total{cause=udp_too_large} netstack_packets_total{verdict=drop}"`

	RecordWaits        uint64 `line:"record_waits" metric:"netstack_record_waits_total" help:"TUN reads after which the reader waited for the record writer to catch up (--record-wait)."`
	RecordWaitsExpired uint64 `line:"record_waits_expired" metric:"netstack_record_waits_expired_total" help:"Waits for the record writer that ran the whole --record-wait with the writer still behind."`

	Accepted        uint64 `line:"accepted" metric:"netstack_connections_accepted_total" help:"Connections handed to the handlers."`
	AcceptUnknown   uint64 `line:"accept_unknown" metric:"netstack_connections_unknown_total" help:"Accepted connections the front end had not admitted."`
	AdmitExpired    uint64 `line:"admit_expired" metric:"netstack_admissions_expired_total" help:"Admitted handshakes gVisor never turned into a connection."`
	AcceptDuplicate uint64 `line:"accept_dup" metric:"netstack_connections_duplicate_total" help:"Connections accepted again for a flow already served, reset without a handler."`
	RepliesOut      uint64 `line:"replies_out" metric:"netstack_replies_total" help:"Packets gVisor wrote on connections."`
	OutDropped      uint64 `line:"replies_dropped" metric:"netstack_replies_dropped_total" help:"Packets gVisor tried to send that the front end filtered."`
	Active          int64  `line:"active" metric:"netstack_connections_active" help:"Connections being served now."`
	Listeners       int64  `line:"listeners" metric:"netstack_listeners" help:"Lazily created listeners open now (at most --max-listeners)."`
	ListenersClosed uint64 `line:"listeners_closed" metric:"netstack_listeners_closed_total" help:"Listeners closed once idle."`
	AcceptReset     uint64 `line:"reset_early" metric:"netstack_connections_reset_early_total" help:"Connections ended when accepted because the client had reset them before."`
	LingerEvicted   uint64 `line:"linger_evicted" metric:"netstack_linger_evicted_total" help:"Finished connections whose user id was forgotten early (more than 4 x --max-conns finished within 5 s)."`
	Untranslated    uint64 `line:"untranslated" metric:"netstack_untranslated_total" help:"Segments passed to a connection of gVisor's the front end no longer knew, without its sequence offset."`

	TxErrNoBufs      uint64 `line:"tx_errors tx_err_nobufs" metric:"netstack_tx_errors_total{cause=nobufs}" help:"Batched front-end replies the kernel refused to send, by cause."`
	TxErrUnreachable uint64 `line:"tx_errors tx_err_unreachable" metric:"netstack_tx_errors_total{cause=unreachable}"`
	TxErrDenied      uint64 `line:"tx_errors tx_err_denied" metric:"netstack_tx_errors_total{cause=denied}"`
	TxErrOther       uint64 `line:"tx_errors tx_err_other" metric:"netstack_tx_errors_total{cause=other}"`
}

// Drops is the sum of every drop counter.
func (s Snapshot) Drops() uint64 {
	return s.DropOutside + s.DropBadCookie + s.DropSYNACK + s.DropRST + s.DropStray +
		s.DropPortZero + s.DropUDP + s.DropICMP + s.DropOtherProto + s.DropMalformed +
		s.DropBadChecksum + s.DropFragment + s.DropConnLimit + s.DropListener + s.DropTxError +
		s.DropSYNRateRegular + s.DropSYNRateIrregular + s.DropBadFlags + s.DropBadSource +
		s.DropExtHeader + s.DropSourceLimit + s.DropNetLimit + s.DropListenerCap +
		s.DropICMPRate + s.DropICMPOff + s.DropICMPMalformed +
		s.DropUDPRate + s.DropUDPOff + s.DropUDPMalformed + s.DropUDPTooLarge
}

// Snapshot reads every counter.
func (s *Stats) Snapshot() Snapshot {
	return Snapshot{
		ICMPEchoReplies: s.ICMPEchoReplies.Load(), UDPReplies: s.UDPReplies.Load(),
		DropICMPRate: s.DropICMPRate.Load(), DropICMPOff: s.DropICMPOff.Load(),
		DropICMPMalformed: s.DropICMPMalformed.Load(),
		DropUDPRate:       s.DropUDPRate.Load(), DropUDPOff: s.DropUDPOff.Load(),
		DropUDPMalformed: s.DropUDPMalformed.Load(), DropUDPTooLarge: s.DropUDPTooLarge.Load(),
		PacketsIn: s.PacketsIn.Load(), SYNACKsSent: s.SYNACKsSent.Load(),
		Handshakes: s.Handshakes.Load(), ToStack: s.ToStack.Load(), Payloads: s.Payloads.Load(),
		DropOutside: s.DropOutside.Load(), DropBadCookie: s.DropBadCookie.Load(),
		DropSYNACK: s.DropSYNACK.Load(), DropRST: s.DropRST.Load(), DropStray: s.DropStray.Load(),
		DropPortZero: s.DropPortZero.Load(), DropUDP: s.DropUDP.Load(), DropICMP: s.DropICMP.Load(),
		DropOtherProto: s.DropOtherProto.Load(), DropMalformed: s.DropMalformed.Load(),
		DropBadChecksum: s.DropBadChecksum.Load(), DropFragment: s.DropFragment.Load(),
		DropConnLimit: s.DropConnLimit.Load(), DropListener: s.DropListener.Load(),
		DropTxError: s.DropTxError.Load(), Accepted: s.Accepted.Load(),
		DropSYNRateRegular: s.DropSYNRateRegular.Load(), DropSYNRateIrregular: s.DropSYNRateIrregular.Load(),
		DropBadFlags: s.DropBadFlags.Load(), DropBadSource: s.DropBadSource.Load(),
		DropExtHeader: s.DropExtHeader.Load(),
		AcceptUnknown: s.AcceptUnknown.Load(), AdmitExpired: s.AdmitExpired.Load(),
		RepliesOut: s.RepliesOut.Load(), OutDropped: s.OutDropped.Load(),
		Active: s.Active.Load(), Listeners: s.Listeners.Load(),
		PureResets:      s.PureResets.Load(),
		DropSourceLimit: s.DropSourceLimit.Load(), DropNetLimit: s.DropNetLimit.Load(),
		DropListenerCap: s.DropListenerCap.Load(), ListenersClosed: s.ListenersClosed.Load(),
		AcceptReset: s.AcceptReset.Load(), LingerEvicted: s.LingerEvicted.Load(), AcceptDuplicate: s.AcceptDuplicate.Load(),
		Untranslated: s.Untranslated.Load(), TxErrDenied: s.TxErrDenied.Load(),
		TxErrNoBufs: s.TxErrNoBufs.Load(), TxErrUnreachable: s.TxErrUnreachable.Load(),
		TxErrOther:  s.TxErrOther.Load(),
		RecordWaits: s.RecordWaits.Load(), RecordWaitsExpired: s.RecordWaitsExpired.Load(),
	}
}
