package records

import (
	"testing"
	"time"
)

func TestEarliestDeadline(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var none time.Time
	for _, c := range []struct {
		name      string
		user      time.Time
		budgets   []time.Time
		want      time.Time
		wantWhich int
	}{
		{"nothing set", none, []time.Time{none, none}, none, -1},
		{"user only", at(5), []time.Time{none}, at(5), -1},
		{"user earliest", at(1), []time.Time{at(2), at(3)}, at(1), -1},
		{"budget earliest", at(9), []time.Time{at(4), at(2)}, at(2), 1},
		{"no user, first set budget", none, []time.Time{none, at(7)}, at(7), 1},
		{"tie goes to the user", at(3), []time.Time{at(3)}, at(3), -1},
		{"tie goes to the earlier budget", none, []time.Time{at(3), at(3)}, at(3), 0},
	} {
		got, which := EarliestDeadline(c.user, c.budgets...)
		if !got.Equal(c.want) || which != c.wantWhich {
			t.Errorf("%s: got %v, %d; want %v, %d", c.name, got, which, c.want, c.wantWhich)
		}
	}
}

func TestDeadlines(t *testing.T) {
	var d Deadlines
	if !d.Read().IsZero() || !d.Write().IsZero() {
		t.Fatal("zero Deadlines has deadlines")
	}
	a, b := time.Unix(1, 0), time.Unix(2, 0)
	d.Set(a)
	if !d.Read().Equal(a) || !d.Write().Equal(a) {
		t.Fatalf("Set: got %v, %v; want both %v", d.Read(), d.Write(), a)
	}
	d.SetRead(b)
	if !d.Read().Equal(b) || !d.Write().Equal(a) {
		t.Fatalf("SetRead: got %v, %v; want %v, %v", d.Read(), d.Write(), b, a)
	}
	d.SetWrite(time.Time{})
	if !d.Read().Equal(b) || !d.Write().IsZero() {
		t.Fatalf("SetWrite: got %v, %v; want %v, none", d.Read(), d.Write(), b)
	}
}
