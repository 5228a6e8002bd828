package download

// The rate-limit table: which URLs were tried (or seen) less than OncePer
// ago. URLs are chosen by attackers, so the table is bounded in bytes
// (Config.MaxState): entries leave when they expire, as the run goes, and
// the oldest live ones are evicted (counted) when the budget is reached.

import (
	"slices"
)

// EntryOverhead is the estimated cost in bytes of one table entry besides
// its URL: the map entry, the queue record and the string headers. The
// budget Config.MaxState counts len(url)+EntryOverhead per entry.
const EntryOverhead = 128

// entry is the state of one URL.
type entry struct {
	// exp is the expiry, in Unix nanoseconds: until then the URL is not
	// fetched again.
	exp int64
	// printed says that the URL's line was printed by this process.
	printed bool
	// inFile says that the URL has a line in tried.tsv (it was tried).
	inFile bool
}

// qrec is one queue record: the URL and the expiry it was queued with. A
// record whose expiry differs from the entry's is stale and skipped.
type qrec struct {
	url string
	exp int64
}

// table is the bounded rate-limit table. Entries are queued in the order
// they were set, which is the order of their expiry (every entry lives
// OncePer from its start), so expiry and eviction pop from the front.
type table struct {
	m      map[string]entry
	q      []qrec
	head   int
	bytes  int64 // estimated size of the live entries
	budget int64
	// inFile counts the entries with a line in tried.tsv.
	inFile int
	// evicted counts live entries dropped for the budget, expired the
	// entries that ran out.
	evicted, expired int
}

func newTable(budget int64) *table {
	return &table{m: map[string]entry{}, budget: budget}
}

func entryCost(u string) int64 { return int64(len(u)) + EntryOverhead }

// get returns the live entry of u at now.
func (t *table) get(u string, now int64) (entry, bool) {
	e, ok := t.m[u]
	if !ok || e.exp <= now {
		return entry{}, false
	}
	return e, true
}

// set replaces u's entry, after removing what has expired at now and
// making room for it within the budget.
func (t *table) set(u string, e entry, now int64) {
	t.remove(u)
	t.prune(now, entryCost(u))
	t.m[u] = e
	t.bytes += entryCost(u)
	if e.inFile {
		t.inFile++
	}
	t.q = append(t.q, qrec{u, e.exp})
	t.compactQueue()
}

// markPrinted sets the printed bit of u's live entry.
func (t *table) markPrinted(u string) {
	if e, ok := t.m[u]; ok {
		e.printed = true
		t.m[u] = e
	}
}

func (t *table) remove(u string) {
	if e, ok := t.m[u]; ok {
		delete(t.m, u)
		t.bytes -= entryCost(u)
		if e.inFile {
			t.inFile--
		}
	}
}

// prune pops expired and stale records from the front, then evicts the
// oldest live entries until room bytes more fit the budget.
func (t *table) prune(now, room int64) {
	for t.head < len(t.q) {
		r := t.q[t.head]
		e, ok := t.m[r.url]
		switch {
		case !ok || e.exp != r.exp:
			// stale
		case e.exp <= now:
			t.remove(r.url)
			t.expired++
		case t.bytes+room > t.budget:
			t.remove(r.url)
			t.evicted++
		default:
			return
		}
		t.q[t.head] = qrec{}
		t.head++
	}
}

// compactQueue drops the popped front of the queue once it is half of it,
// and rebuilds the queue from the map when stale records (a clock that
// went back) make it twice the live entries.
func (t *table) compactQueue() {
	if t.head > 1024 && t.head*2 > len(t.q) {
		t.q = append(t.q[:0:0], t.q[t.head:]...)
		t.head = 0
	}
	if live := len(t.q) - t.head; live > 1024 && live > 2*len(t.m) {
		t.q = t.q[:0:0]
		t.head = 0
		for u, e := range t.m {
			t.q = append(t.q, qrec{u, e.exp})
		}
		slices.SortFunc(t.q, func(a, b qrec) int { return cmpInt64(a.exp, b.exp) })
	}
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Len returns the number of entries.
func (t *table) Len() int { return len(t.m) }

// load fills the table from the entries of tried.tsv (in file order),
// oldest expiry first, so that the budget keeps the latest ones.
func (t *table) load(recs []qrec, now int64) {
	recs = slices.DeleteFunc(recs, func(r qrec) bool { return r.exp <= now })
	slices.SortStableFunc(recs, func(a, b qrec) int { return cmpInt64(a.exp, b.exp) })
	for _, r := range recs {
		t.set(r.url, entry{exp: r.exp, inFile: true}, now)
	}
}

// triedEntries returns the URL and expiry of every entry with a line in
// tried.tsv, for its rewrite.
func (t *table) triedEntries() []qrec {
	out := make([]qrec, 0, t.inFile)
	for _, r := range t.q[t.head:] {
		if e, ok := t.m[r.url]; ok && e.exp == r.exp && e.inFile {
			out = append(out, r)
		}
	}
	return out
}
