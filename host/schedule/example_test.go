package schedule_test

import (
	"fmt"
	"time"

	"github.com/shoestring-go/shoestring/host/schedule"
)

// Parse takes a cron spec, a descriptor or "@every"; its errors name what is wrong.
func ExampleParse() {
	for _, spec := range []string{"*/15 * * * *", "CRON_TZ=Europe/Paris 30 2 * * *", "@every 90s", "@every 500ms", "61 * * * *"} {
		s, err := schedule.Parse(spec)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(s)
	}
	// Output:
	// */15 * * * *
	// CRON_TZ=Europe/Paris 30 2 * * *
	// @every 90s
	// "@every 500ms": @every must be whole seconds, from 1s to 366 days
	// "61 * * * *": end of range (61) above maximum (59): 61
}

// Next follows the zone's wall clock. On 29 March 2026 Paris skips from 02:00 to
// 03:00: that day's 02:30 tick runs once, at the transition, instead of being skipped.
func ExampleSchedule_Next() {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		fmt.Println(err)
		return
	}
	s, _ := schedule.Parse("CRON_TZ=Europe/Paris 30 2 * * *")
	t := time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC)
	for range 3 {
		t = s.Next(t)
		fmt.Println(t.In(paris).Format(time.RFC3339))
	}
	// Output:
	// 2026-03-28T02:30:00+01:00
	// 2026-03-29T03:00:00+02:00
	// 2026-03-30T02:30:00+02:00
}

// Prev is the latest tick at or before a time: the tick an instance that was down
// would catch up.
func ExampleSchedule_Prev() {
	s, _ := schedule.Parse("@hourly")
	tick, ok := s.Prev(time.Date(2026, 12, 4, 13, 47, 0, 0, time.UTC))
	fmt.Println(tick.Format(time.RFC3339), ok)
	// Output:
	// 2026-12-04T13:00:00Z true
}

// Period is how long a tick stays worth catching up: until the next one.
func ExampleSchedule_Period() {
	s, _ := schedule.Parse("0 9 * * 1-5") // 09:00 on weekdays
	friday := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	fmt.Println(s.Period(friday))
	// Output:
	// 72h0m0s
}

// String is the spec as written.
func ExampleSchedule_String() {
	s, _ := schedule.Parse("@every 15m")
	fmt.Println(s.String())
	// Output:
	// @every 15m
}
