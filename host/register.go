package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"time"

	"github.com/shoestring-go/shoestring/worker"
	"github.com/shoestring-go/shoestring/worker/task"
)

// Args is the payload of one task kind; Kind is its name, e.g. "report:build"
// (1-128 letters, digits and ":._-"). Args encode as JSON. If an Args also has
// `Validate() error`, it is called before enqueueing (POST /api/v1/jobs and Enqueue)
// and again before the handler runs; its message is what a refused client sees.
//
// Kind must work on the zero value: Register reads the kind from it. Use a struct type
// with value receivers, as River's JobArgs do.
type Args interface{ Kind() string }

// validator is the optional Validate of an Args.
type validator interface{ Validate() error }

// kind is one registered task kind.
type kind struct {
	name     string
	argsType reflect.Type // A
	// prepare decodes a payload strictly into the kind's Args, validates it, and
	// returns its canonical encoding with the decoded value.
	prepare  func(payload []byte) ([]byte, Args, error)
	handler  worker.Handler
	defaults options
	// before checks an enqueue with I/O (BeforeEnqueue); nil for none. beforeType is
	// the Args type it was written for.
	before     func(ctx context.Context, args Args) error
	beforeType reflect.Type
	// demo kinds exist only when DEMO_TASKS is on (DemoTask).
	demo bool
}

// validKind says whether name is 1-128 letters, digits or ":._-".
func validKind(name string) bool { return len(name) <= 128 && kindRe.MatchString(name) }

// Length checked apart (validKind), as storage.ValidJobID explains.
var kindRe = regexp.MustCompile(`^[A-Za-z0-9:._-]+$`)

// Register adds the task kind A, done by fn, to h. Payloads are decoded strictly into
// A (an unknown field is an error) and validated (A's Validate, if any) in the web
// tier, in Enqueue, and in the worker, where an invalid payload fails at once with no
// retry. fn's result is stored JSON-encoded as the job's result; its error retries the
// task while retries last, or fails it at once when it wraps worker.SkipRetry. fn must
// honour ctx and be idempotent: delivery is at-least-once. opts set the kind's defaults
// (Queue, Timeout, MaxRetry, BeforeEnqueue).
//
// Register panics, because the program cannot run as written, when the kind is empty,
// malformed or registered twice, when fn is nil, or when Run has already started.
func Register[A Args](h *Host, fn func(ctx context.Context, t *worker.Task, args A) (any, error), opts ...TaskOption) {
	h.mustNotBeFrozen("Register")
	name := kindOf[A]()
	if !validKind(name) {
		panic(fmt.Sprintf("host: Register: kind %q of %T must be 1-128 letters, digits or \":._-\"", name, *new(A)))
	}
	if fn == nil {
		panic(fmt.Sprintf("host: Register: nil handler for kind %q", name))
	}
	if _, dup := h.kinds[name]; dup {
		panic(fmt.Sprintf("host: Register: kind %q registered twice", name))
	}
	k := &kind{name: name, argsType: reflect.TypeFor[A]()}
	for _, o := range opts {
		o.applyTask(&k.defaults, k)
	}
	if k.before != nil && k.beforeType != k.argsType {
		panic(fmt.Sprintf("host: Register: kind %q: BeforeEnqueue is for %v, not %v", name, k.beforeType, k.argsType))
	}
	k.prepare = func(payload []byte) ([]byte, Args, error) {
		a, err := decodeArgs[A](payload)
		if err != nil {
			return nil, nil, err
		}
		canonical, err := json.Marshal(a)
		if err != nil {
			return nil, nil, &task.InvalidError{Field: "payload", Msg: "does not encode as JSON: " + err.Error()}
		}
		return canonical, a, nil
	}
	k.handler = func(ctx context.Context, t *worker.Task) (any, error) {
		a, err := decodeArgs[A](t.Payload)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", err, worker.SkipRetry)
		}
		return fn(ctx, t, a)
	}
	h.kinds[name] = k
}

// kindOf reads A's kind from its zero value, turning a nil-pointer panic into a
// clear one.
func kindOf[A Args]() (name string) {
	defer func() {
		if p := recover(); p != nil {
			panic(fmt.Sprintf("host: Register: %T.Kind() panicked on the zero value (%v); use a struct type with a value receiver", *new(A), p))
		}
	}()
	return (*new(A)).Kind()
}

// decodeArgs decodes payload strictly into an A and validates it. Errors are
// *task.InvalidError.
func decodeArgs[A Args](payload []byte) (A, error) {
	var a A
	if err := task.StrictDecode(payload, &a); err != nil {
		return a, err
	}
	return a, validate(&a)
}

// validate calls Validate on *a or a, whichever has it, as an *task.InvalidError of the
// payload unless it already is one.
func validate[A any](a *A) error {
	var v validator
	if pv, ok := any(a).(validator); ok {
		v = pv
	} else if vv, ok := any(*a).(validator); ok {
		v = vv
	}
	if v == nil {
		return nil
	}
	err := v.Validate()
	if err == nil {
		return nil
	}
	var ie *task.InvalidError
	if errors.As(err, &ie) {
		return err
	}
	return &task.InvalidError{Field: "payload", Msg: err.Error()}
}

// options are a kind's defaults or one enqueue's choices; zero fields are unset.
type options struct {
	queue     string
	timeout   time.Duration
	maxRetry  *int
	processIn time.Duration
	uniqueFor time.Duration
	id        string
	schedule  scheduleOptions
}

// TaskOption sets a default of a task kind, at Register.
type TaskOption interface {
	applyTask(o *options, k *kind)
}

// EnqueueOption sets a choice of one Enqueue.
type EnqueueOption interface {
	applyEnqueue(o *options)
}

// Option is both a TaskOption (the kind's default) and an EnqueueOption (this job's
// choice, which wins).
type Option struct{ set func(*options) }

func (o Option) applyTask(opts *options, _ *kind) { o.set(opts) }
func (o Option) applyEnqueue(opts *options)       { o.set(opts) }

type enqueueOption func(*options)

func (o enqueueOption) applyEnqueue(opts *options) { o(opts) }

type taskOption func(*kind)

func (o taskOption) applyTask(_ *options, k *kind) { o(k) }

// Queue puts tasks on the named queue, one of QUEUES; otherwise they go to "default"
// (or the heaviest queue when there is no "default"). Enqueue refuses an unserved
// queue with task.ErrUnknownQueue.
func Queue(name string) Option { return Option{func(o *options) { o.queue = name }} }

// Timeout bounds one run of a task, 1 s to 24 h: its context is cancelled then, and a
// handler still running HANG_GRACE later makes the watchdog recycle the worker. The
// default is asynq's 30 minutes.
func Timeout(d time.Duration) Option { return Option{func(o *options) { o.timeout = d }} }

// MaxRetry is how many times a failed run is retried (0-100), with asynq's exponential
// backoff; asynq's default is 25.
func MaxRetry(n int) Option { return Option{func(o *options) { o.maxRetry = &n }} }

// ProcessIn delays a task by d (up to a year); the job is "scheduled" until then.
func ProcessIn(d time.Duration) EnqueueOption {
	return enqueueOption(func(o *options) { o.processIn = d })
}

// UniqueFor refuses, with task.ErrDuplicate, a task identical to this one (same kind,
// queue and payload) for d (1 s to 30 days), or until this one completes.
func UniqueFor(d time.Duration) EnqueueOption {
	return enqueueOption(func(o *options) { o.uniqueFor = d })
}

// JobID gives the job a chosen id (1-128 letters, digits and ":@._-") instead of a
// random one. The enqueue is then idempotent: while the job's record exists (until
// JOB_RETENTION after it finished), or asynq still holds its task (a failed task stays
// archived), another enqueue with that id is refused with ErrDuplicate. Uploads use it
// to key their blobs by job; schedules to enqueue each tick once.
func JobID(id string) EnqueueOption { return enqueueOption(func(o *options) { o.id = id }) }

// BeforeEnqueue runs check after a payload of kind A has been decoded and validated,
// and before the job is stored, in the web tier and in Enqueue (never in the worker):
// for checks that need I/O, such as "the upload this names exists". ctx carries the
// enqueue's 5 s deadline. Its error refuses the enqueue: an *InvalidError is a 4xx
// naming the field, as are the errors web.WriteError maps (ErrDuplicate, *web.Error);
// anything else is ErrUnavailable, a 503. Register panics if A is not its kind's Args.
func BeforeEnqueue[A Args](check func(ctx context.Context, args A) error) TaskOption {
	return taskOption(func(k *kind) {
		k.beforeType = reflect.TypeFor[A]()
		k.before = func(ctx context.Context, args Args) error { return check(ctx, args.(A)) }
	})
}

// DemoTask marks a kind as a demonstration, registered only when DEMO_TASKS is true
// (by default, only in trial mode, with the embedded Redis): tasks anyone could use
// to keep workers busy have no place on a public deployment.
func DemoTask() TaskOption { return taskOption(func(k *kind) { k.demo = true }) }

// activeKinds returns the kinds this run serves: all, less the demonstration kinds
// unless demo is on.
func (h *Host) activeKinds(demo bool) map[string]*kind {
	active := make(map[string]*kind, len(h.kinds))
	for name, k := range h.kinds {
		if !k.demo || demo {
			active[name] = k
		}
	}
	return active
}

// InvalidError says which field of a job is wrong and why: what Validate and
// BeforeEnqueue return to refuse one with a 4xx. Field is a JSON path such as
// "payload.sizes"; Unprocessable makes it 422 rather than 400.
type InvalidError = task.InvalidError
