// Package allocs counts heap allocations per call exactly, for the allocation budgets of
// hark's per-frame path. testing.AllocsPerRun floors its average to an integer, so a path
// that allocates once every 16 frames reads as 0 there; a budget of zero must see it.
package allocs

import "runtime"

// PerRun calls f once to warm up, then runs times, and returns the mean number of heap
// allocations per call. Like testing.AllocsPerRun it runs with GOMAXPROCS 1, so other
// goroutines of the test allocate as little as possible meanwhile; the count is the
// process's, so it takes the lowest of three such measurements: an allocation of f's shows
// in each of them, a stray one from another goroutine rarely in all three.
func PerRun(runs int, f func()) float64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
	best := -1.0
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			f()
		}
		runtime.ReadMemStats(&after)
		if n := float64(after.Mallocs-before.Mallocs) / float64(runs); best < 0 || n < best {
			best = n
		}
	}
	return best
}
