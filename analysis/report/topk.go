package report

import (
	"container/heap"
	"slices"
	"strings"
)

// topK counts the most frequent keys of a stream in bounded memory, by the
// Space-Saving algorithm (Metwally, Agrawal, El Abbadi 2005): at most cap
// keys are held; a new key arriving when all are taken replaces the key
// with the smallest count and inherits that count (its possible
// overcount). A key of true count above total/cap is always held, and a
// held key's count exceeds its true count by at most its err. Keys are
// cut to maxKeyBytes, so a list holds at most cap*maxKeyBytes key bytes.
type topK struct {
	cap     int
	m       map[string]*tkItem
	h       tkHeap
	total   int
	evicted int
}

// maxKeyBytes caps a key (a payload prefix, a host, a password, ...):
// attackers choose these strings.
const maxKeyBytes = 128

type tkItem struct {
	key        string
	count, err int
	idx        int
}

type tkHeap []*tkItem

func (h tkHeap) Len() int           { return len(h) }
func (h tkHeap) Less(i, j int) bool { return h[i].count < h[j].count }
func (h tkHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].idx = i; h[j].idx = j }
func (h *tkHeap) Push(x any)        { it := x.(*tkItem); it.idx = len(*h); *h = append(*h, it) }
func (h *tkHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func newTopK(capacity int) *topK {
	return &topK{cap: capacity, m: make(map[string]*tkItem)}
}

// add counts one occurrence of key.
func (t *topK) add(key string) {
	if len(key) > maxKeyBytes {
		key = strings.ToValidUTF8(key[:maxKeyBytes], "")
	}
	t.total++
	if it, ok := t.m[key]; ok {
		it.count++
		heap.Fix(&t.h, it.idx)
		return
	}
	if len(t.h) < t.cap {
		it := &tkItem{key: strings.Clone(key), count: 1}
		t.m[it.key] = it
		heap.Push(&t.h, it)
		return
	}
	// Replace the smallest: the new key may have been among its count.
	it := t.h[0]
	delete(t.m, it.key)
	t.evicted++
	it.key, it.err = strings.Clone(key), it.count
	it.count++
	t.m[it.key] = it
	heap.Fix(&t.h, 0)
}

// list returns the n largest counts, ties by key.
func (t *topK) list(n int) TopList {
	items := slices.Clone(t.h)
	slices.SortFunc(items, func(a, b *tkItem) int {
		if a.count != b.count {
			return b.count - a.count
		}
		return strings.Compare(a.key, b.key)
	})
	out := TopList{Total: t.total, Held: len(t.h), Evicted: t.evicted, Items: []KeyCount{}}
	for _, it := range items[:min(n, len(items))] {
		out.Items = append(out.Items, KeyCount{Key: it.key, Count: it.count, MaxOvercount: it.err})
	}
	return out
}

// TopList is one top list of the report.
type TopList struct {
	// Items are the largest counts, largest first (ties by key).
	Items []KeyCount `json:"items"`
	// Total counts every occurrence seen, listed or not.
	Total int `json:"total"`
	// Held is the number of distinct keys held (at most the list's
	// capacity, Limits.TopKeys).
	Held int `json:"held"`
	// Evicted counts the keys dropped to stay within the capacity; 0 means
	// every count is exact and Held is the number of distinct keys.
	Evicted int `json:"evicted"`
}

// KeyCount is one row of a top list.
type KeyCount struct {
	Key   string `json:"key"`
	Count int    `json:"count"`
	// MaxOvercount bounds how much Count may exceed the true count (0:
	// exact); non-zero only after evictions.
	MaxOvercount int `json:"max_overcount,omitempty"`
}
