package assemble

// Stage A (see doc.go): probe requests are matched to the scamper
// confirmations, in rounds, with the original's eviction of old batches.

import "net/netip"

// event is one raw-log row: the packet, its probe request (the swapped view
// of the row, present when probed) and, once stage A found it, the time of
// its probe confirmation.
type event struct {
	ts     int64 // packet second, floor(ts ms / 1000)
	confUs int64 // confirmation time in µs, valid if conf
	batch  int32
	saddr  netip.Addr
	daddr  netip.Addr
	ipid   uint16
	ttl    uint8
	proto  uint8
	flags  uint16 // bit i = flagNames[i]
	probed bool
	conf   bool
	sport  uint16
	dport  uint16
	window uint16
	snum   uint32
	anum   uint32
	userid uint32
	panum  uint32 // probe anum
	psnum  uint32 // probe snum
	// options is the options column as logged (names joined by ':').
	options string
	// payload is the payload hex exactly as logged.
	payload string
	method  string
	nprobes int64
}

// confirmation is one scamper-log row.
type confirmation struct {
	us     int64 // start sec + start usec, in µs
	batch  int32
	src    netip.Addr
	dst    netip.Addr
	sport  uint16
	dport  uint16
	userid uint32
	method string
}

// confirmationMatcher is the original's ConfirmationMatcher.
type confirmationMatcher struct {
	probeTimeoutUs int64
	// ccache holds the confirmations by userid, in file order.
	ccache map[uint32][]*confirmation
	// ecache holds the probed events still waiting for a confirmation
	// (older rounds first), then the rows loaded this round.
	ecache []*event
	// cts and ets are the largest confirmation and packet times loaded so
	// far, in µs; haveCts/haveEts say whether anything was loaded.
	cts, ets         int64
	haveCts, haveEts bool
	// batchOrder and observed are the original's batch_id_order and
	// observed_batch_ids, which drive the eviction.
	batchOrder []int32
	observed   map[int32]bool
	stats      *Stats
}

func newConfirmationMatcher(probeTimeoutUs int64, st *Stats) *confirmationMatcher {
	// The readers have prepared their first file (batch 0) and advanced
	// their counter to 1, which is what the original starts from.
	return &confirmationMatcher{
		probeTimeoutUs: probeTimeoutUs,
		ccache:         make(map[uint32][]*confirmation),
		batchOrder:     []int32{0, 1},
		observed:       map[int32]bool{0: true, 1: true},
		stats:          st,
	}
}

func (m *confirmationMatcher) addConfirmations(cs []*confirmation) {
	for _, c := range cs {
		m.ccache[c.userid] = append(m.ccache[c.userid], c)
		if !m.haveCts || m.cts < c.us {
			m.cts, m.haveCts = c.us, true
		}
	}
}

func (m *confirmationMatcher) addEvents(evs []*event) {
	for _, ev := range evs {
		if us := ev.ts * 1e6; !m.haveEts || m.ets < us {
			m.ets, m.haveEts = us, true
		}
	}
	m.ecache = append(m.ecache, evs...)
}

// findConfirmation takes the first confirmation of ev's userid whose key
// equals ev's probe request and whose time is within the probe timeout.
func (m *confirmationMatcher) findConfirmation(ev *event) (*confirmation, bool) {
	list := m.ccache[ev.userid]
	pkt := ev.ts * 1e6
	for i, c := range list {
		// The request is the swapped view of the row.
		if c.src != ev.daddr || c.dst != ev.saddr || c.sport != ev.dport || c.dport != ev.sport ||
			c.method != ev.method || c.userid != ev.userid {
			continue
		}
		d := c.us - pkt
		if d < 0 {
			d = -d
		}
		if d <= m.probeTimeoutUs {
			copy(list[i:], list[i+1:])
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			if len(list) == 0 {
				delete(m.ccache, ev.userid)
			} else {
				m.ccache[ev.userid] = list
			}
			return c, true
		}
	}
	return nil, false
}

// match is the original's match_events: it emits the unprobed and the
// confirmed events of ecache, in order, into out, keeps the rest, and evicts
// the oldest batch once three batch ids have been seen.
func (m *confirmationMatcher) match(out []*event) []*event {
	kept := m.ecache[:0]
	for _, ev := range m.ecache {
		m.observed[ev.batch] = true
		if !ev.probed {
			m.stats.Unprobed++
			out = append(out, ev)
			continue
		}
		if c, ok := m.findConfirmation(ev); ok {
			ev.conf, ev.confUs = true, c.us
			m.stats.Confirmed++
			out = append(out, ev)
			continue
		}
		kept = append(kept, ev)
	}
	clear(m.ecache[len(kept):])
	m.ecache = kept
	if len(m.observed) >= 3 {
		oldest := m.batchOrder[0]
		m.evict(oldest)
		// The observed ids not yet in the order join it in ascending
		// order, the order in which CPython iterates a set of small ints.
		var ids []int32
		for id := range m.observed {
			if !containsInt32(m.batchOrder, id) {
				ids = append(ids, id)
			}
		}
		sortInt32(ids)
		m.batchOrder = append(m.batchOrder, ids...)
		delete(m.observed, oldest)
		m.batchOrder = m.batchOrder[1:]
	}
	return out
}

// evict drops the confirmations and the unmatched events of batch b.
func (m *confirmationMatcher) evict(b int32) {
	for uid, list := range m.ccache {
		kept := list[:0]
		for _, c := range list {
			if c.batch != b {
				kept = append(kept, c)
			} else {
				m.stats.ConfirmationsEvicted++
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(m.ccache, uid)
		} else {
			m.ccache[uid] = kept
		}
	}
	kept := m.ecache[:0]
	for _, ev := range m.ecache {
		if ev.batch != b {
			kept = append(kept, ev)
		} else {
			m.stats.UnconfirmedDropped++
		}
	}
	clear(m.ecache[len(kept):])
	m.ecache = kept
}

func sortInt32(s []int32) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func containsInt32(s []int32, v int32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
