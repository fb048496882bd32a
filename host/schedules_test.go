package host_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/host/hosttest"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
	"github.com/shoestring-go/shoestring/tasks/demo"
)

// TestCatchUpMissedTick: a schedule known from before, whose latest tick no instance
// enqueued, gets that tick (and only that one) at start; a brand-new schedule gets
// nothing for the past; NoCatchUp gets nothing either.
func TestCatchUpMissedTick(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	ctx := context.Background()
	store := storage.NewSchedules(r.Client(t))
	past := time.Now().Add(-48 * time.Hour)
	for _, name := range []string{"known", "known-nocatchup"} {
		if err := store.Seen(ctx, name, past); err != nil {
			t.Fatal(err)
		}
	}
	// @every 1h: the latest tick is under an hour old, and nobody enqueued it.
	a := hosttest.Start(t, func(h *host.Host) {
		demo.Register(h)
		h.Schedule("@every 1h", demo.Echo{Message: "hourly"}, host.ScheduleName("known"))
		h.Schedule("@every 1h", demo.Echo{Message: "hourly"}, host.ScheduleName("known-nocatchup"), host.NoCatchUp())
		h.Schedule("@every 1h", demo.Echo{Message: "hourly"}, host.ScheduleName("new"))
	}, map[string]string{"REDIS_URL": r.URL(), "API_TOKEN": testToken, "DEMO_TASKS": "true"}, hosttest.Options{WebOnly: true})
	tick := time.Now().Truncate(time.Hour).Unix()
	jobs := storage.NewJobs(r.Client(t), time.Hour, "default")
	var j storage.Job
	waitFor(t, 10*time.Second, func() bool {
		var err error
		j, err = jobs.Get(ctx, "known@"+strconv.FormatInt(tick, 10))
		return err == nil
	})
	if j.Schedule != "known" || j.Tick == nil || j.Tick.Unix() != tick || !strings.Contains(j.Note, "missed tick") {
		t.Errorf("caught-up job = %+v", j)
	}
	for _, id := range []string{"known-nocatchup@", "new@"} {
		if _, err := jobs.Get(ctx, id+strconv.FormatInt(tick, 10)); err == nil {
			t.Errorf("%s%d was enqueued", id, tick)
		}
	}
	var list struct {
		Schedules []struct {
			Name      string
			LastJobID string     `json:"last_job_id"`
			LastState string     `json:"last_state"`
			NextRunAt *time.Time `json:"next_run_at"`
		}
	}
	// The tick is recorded just after its job is enqueued: wait for it.
	waitFor(t, 10*time.Second, func() bool {
		getJSONAuth(t, a.URL+"/api/v1/schedules", &list)
		return len(list.Schedules) > 0 && list.Schedules[0].LastJobID != ""
	})
	if len(list.Schedules) != 3 || list.Schedules[0].LastJobID != fmt.Sprintf("known@%d", tick) ||
		list.Schedules[0].LastState != "pending" || list.Schedules[2].NextRunAt == nil {
		t.Errorf("schedules = %+v", list.Schedules)
	}
}

// TestOverlap: with skip_if_running a tick whose previous run is still active is
// skipped and recorded as such; without it the tick runs, and its record says so.
func TestOverlap(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	ctx := context.Background()
	hosttest.Start(t, func(h *host.Host) {
		demo.Register(h)
		h.Schedule("@every 1s", demo.Echo{SleepMS: 2500}, host.ScheduleName("slow-skip"), host.SkipIfRunning(), host.NoCatchUp())
		h.Schedule("@every 1s", demo.Echo{SleepMS: 2500}, host.ScheduleName("slow-run"), host.NoCatchUp())
	}, map[string]string{"REDIS_URL": r.URL(), "DEMO_TASKS": "true"})
	store := storage.NewSchedules(r.Client(t))
	jobs := storage.NewJobs(r.Client(t), time.Hour, "default")
	waitFor(t, 10*time.Second, func() bool {
		st, _ := store.Get(ctx, "slow-skip")
		return strings.Contains(st.SkipReason, "is still")
	})
	keys, _ := r.Client(t).Keys(ctx, "shoestring:{default}:job:slow-run@*").Result()
	waitFor(t, 10*time.Second, func() bool {
		keys, _ = r.Client(t).Keys(ctx, "shoestring:{default}:job:slow-run@*").Result()
		for _, k := range keys {
			j, _ := jobs.Get(ctx, strings.TrimPrefix(k, "shoestring:{default}:job:"))
			if strings.Contains(j.Note, "ran anyway") {
				return true
			}
		}
		return false
	})
	skipped, _ := r.Client(t).Keys(ctx, "shoestring:{default}:job:slow-skip@*").Result()
	if len(skipped) >= len(keys) {
		t.Errorf("skip_if_running made %d jobs, the other schedule %d", len(skipped), len(keys))
	}
}

// TestScheduleProgrammingErrors: a bad spec or a duplicate name panics at Schedule; an
// unregistered kind or an invalid payload panics at Run.
func TestScheduleProgrammingErrors(t *testing.T) {
	t.Parallel()
	mustPanic(t, `"61 * * * *"`, func() { host.New().Schedule("61 * * * *", demo.Echo{}) })
	mustPanic(t, `name "echo" used twice`, func() {
		h := host.New()
		h.Schedule("@hourly", demo.Echo{})
		h.Schedule("@daily", demo.Echo{})
	})
	r := storagetest.StartRedis(t)
	env := map[string]string{"REDIS_URL": r.URL(), "PORT": "0", "BLOB_URL": "mem://", "DEMO_TASKS": "true"}
	getenv := func(k string) string { return env[k] }
	mustPanic(t, `kind "echo" is not registered`, func() {
		h := host.New()
		h.Schedule("@hourly", demo.Echo{})
		_ = h.Run(context.Background(), []string{"app", "web"}, getenv, nil, nil)
	})
	mustPanic(t, "must be 0-3600000", func() {
		h := host.New()
		demo.Register(h)
		h.Schedule("@hourly", demo.Echo{SleepMS: -1})
		_ = h.Run(context.Background(), []string{"app", "web"}, getenv, nil, nil)
	})
}
