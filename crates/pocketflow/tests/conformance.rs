//! Conformance tests: each PocketFlow behaviour the crate promises, checked
//! on real values (what ran, in which order, how often, with which params,
//! after how much virtual time).

use pocketflow::{
    Action, Batch, BatchFlow, BatchNode, Flow, FlowError, Node, NodeError, NodeRunner,
    ParallelBatch, ParallelBatchFlow, ParamSets, Params, Phase, Runnable,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The shared store of these tests.
#[derive(Default)]
struct Store {
    /// Names of the nodes that ran, in order.
    log: Vec<String>,
    counter: u32,
    value: i64,
    /// Params a node saw, in order.
    seen: Vec<Params>,
    outputs: Vec<i64>,
}

fn params(value: Value) -> Params {
    match value {
        Value::Object(map) => map.into_iter().collect(),
        _ => Params::new(),
    }
}

/// Logs its name and returns a fixed action.
struct Say {
    name: &'static str,
    action: &'static str,
}

fn say(name: &'static str) -> Say {
    Say {
        name,
        action: "default",
    }
}

impl Node<Store> for Say {
    type Prep = ();
    type Exec = ();

    fn name(&self) -> &str {
        self.name
    }

    async fn prep(&self, _: &Store, _: &Params) -> Result<(), NodeError> {
        Ok(())
    }

    async fn exec(&self, _: &()) -> Result<(), NodeError> {
        Ok(())
    }

    async fn post(&self, store: &mut Store, _: &Params, _: (), _: ()) -> Result<Action, NodeError> {
        store.log.push(self.name.to_owned());
        Ok(Action::from(self.action))
    }
}

#[tokio::test]
async fn default_chain_runs_in_order_and_returns_the_last_action() {
    let mut flow = Flow::new();
    let a = flow.add(say("a"));
    let b = flow.add(say("b"));
    let c = flow.add(say("c"));
    flow.next(a, b).next(b, c);

    let mut store = Store::default();
    let action = flow.run(&mut store).await.unwrap();
    assert_eq!(store.log, ["a", "b", "c"]);
    assert_eq!(action, "default");
}

#[tokio::test]
async fn named_actions_choose_the_branch() {
    for (verdict, expected) in [("approve", "publish"), ("revise", "rewrite")] {
        let mut flow = Flow::new();
        let review = flow.add(Say {
            name: "review",
            action: verdict,
        });
        let publish = flow.add(say("publish"));
        let rewrite = flow.add(say("rewrite"));
        flow.on(review, "approve", publish)
            .on(review, "revise", rewrite);

        let mut store = Store::default();
        flow.run(&mut store).await.unwrap();
        assert_eq!(store.log, ["review", expected]);
    }
}

/// Counts up; asks to go round again until the counter reaches `limit`.
struct CountTo {
    limit: u32,
}

impl Node<Store> for CountTo {
    type Prep = u32;
    type Exec = u32;

    async fn prep(&self, store: &Store, _: &Params) -> Result<u32, NodeError> {
        Ok(store.counter)
    }

    async fn exec(&self, counter: &u32) -> Result<u32, NodeError> {
        Ok(counter + 1)
    }

    async fn post(
        &self,
        store: &mut Store,
        _: &Params,
        _: u32,
        next: u32,
    ) -> Result<Action, NodeError> {
        store.counter = next;
        store.log.push(format!("count {next}"));
        Ok(if next < self.limit { "again" } else { "done" }.into())
    }
}

#[tokio::test]
async fn a_loop_runs_until_its_counter_says_done() {
    let mut flow = Flow::new();
    let start = flow.add(say("start"));
    let count = flow.add(CountTo { limit: 3 });
    let body = flow.add(say("body"));
    let finish = flow.add(say("finish"));
    flow.next(start, count)
        .on(count, "again", body)
        .next(body, count)
        .on(count, "done", finish);

    let mut store = Store::default();
    flow.run(&mut store).await.unwrap();
    assert_eq!(store.counter, 3);
    assert_eq!(
        store.log,
        [
            "start", "count 1", "body", "count 2", "body", "count 3", "finish"
        ]
    );
}

#[tokio::test]
async fn an_action_without_a_successor_ends_the_flow_with_a_warning() {
    let warnings = WarningCounter::install();
    let mut flow = Flow::new();
    let a = flow.add(Say {
        name: "a",
        action: "surprise",
    });
    let b = flow.add(say("b"));
    flow.next(a, b);

    let mut store = Store::default();
    let action = flow.run(&mut store).await.unwrap();
    assert_eq!(action, "surprise");
    assert_eq!(store.log, ["a"]);
    assert_eq!(warnings.count(), 1);

    // A node without any successors ends the flow quietly.
    let mut quiet = Flow::new();
    quiet.add(Say {
        name: "last",
        action: "anything",
    });
    quiet.run(&mut store).await.unwrap();
    assert_eq!(warnings.count(), 1);
}

#[tokio::test]
async fn overwriting_a_successor_warns_and_the_new_one_wins() {
    let warnings = WarningCounter::install();
    let mut flow = Flow::new();
    let a = flow.add(say("a"));
    let old = flow.add(say("old"));
    let new = flow.add(say("new"));
    flow.next(a, old);
    assert_eq!(warnings.count(), 0);
    flow.next(a, new);
    assert_eq!(warnings.count(), 1);
    assert_eq!(flow.successor(a, "default"), Some(new));

    let mut store = Store::default();
    flow.run(&mut store).await.unwrap();
    assert_eq!(store.log, ["a", "new"]);
}

/// Records the params it sees.
struct SeeParams;

impl Node<Store> for SeeParams {
    type Prep = Params;
    type Exec = ();

    async fn prep(&self, _: &Store, params: &Params) -> Result<Params, NodeError> {
        Ok(params.clone())
    }

    async fn exec(&self, _: &Params) -> Result<(), NodeError> {
        Ok(())
    }

    async fn post(
        &self,
        store: &mut Store,
        _: &Params,
        seen: Params,
        _: (),
    ) -> Result<Action, NodeError> {
        store.seen.push(seen);
        Ok(Action::DEFAULT)
    }
}

#[tokio::test]
async fn nested_flows_route_on_their_last_action_and_pass_params_down() {
    let mut inner = Flow::named("inner").with_params(params(json!({"lang": "en", "depth": 2})));
    let see = inner.add(SeeParams);
    let end = inner.add(Say {
        name: "inner end",
        action: "finished",
    });
    inner.next(see, end);

    let mut outer = Flow::named("outer").with_params(params(json!({"lang": "fr", "outer": true})));
    let first = outer.add(say("first"));
    let nested = outer.add_runnable(inner);
    let after = outer.add(say("after"));
    let wrong = outer.add(say("wrong"));
    outer
        .next(first, nested)
        .on(nested, "finished", after)
        .next(nested, wrong);

    let mut store = Store::default();
    outer.run(&mut store).await.unwrap();
    assert_eq!(store.log, ["first", "inner end", "after"]);
    // The parent's params win over the nested flow's own; the rest are kept.
    assert_eq!(
        store.seen,
        [params(json!({"lang": "fr", "depth": 2, "outer": true}))]
    );
}

#[tokio::test]
async fn a_flow_post_sees_the_last_action_and_replaces_it() {
    let mut inner = Flow::named("inner").with_post(|store: &mut Store, _: &Params, last| {
        store.log.push(format!("inner post saw {last}"));
        Ok(Action::from("mapped"))
    });
    inner.add(Say {
        name: "work",
        action: "raw",
    });

    let mut outer = Flow::new();
    let nested = outer.add_runnable(inner);
    let mapped = outer.add(say("mapped branch"));
    outer.on(nested, "mapped", mapped);

    let mut store = Store::default();
    let action = outer.run(&mut store).await.unwrap();
    assert_eq!(store.log, ["work", "inner post saw raw", "mapped branch"]);
    assert_eq!(action, "default");
}

/// Fails its first `failures` attempts, then succeeds with the attempt number.
struct Flaky {
    failures: u32,
    max_retries: u32,
    wait: Duration,
    /// Replaces the error with -1 when set.
    fallback: bool,
    attempts: Arc<AtomicU32>,
    fallbacks: Arc<AtomicU32>,
}

impl Flaky {
    fn new(failures: u32, max_retries: u32) -> Self {
        Flaky {
            failures,
            max_retries,
            wait: Duration::ZERO,
            fallback: false,
            attempts: Arc::default(),
            fallbacks: Arc::default(),
        }
    }
}

impl Node<Store> for Flaky {
    type Prep = ();
    type Exec = i64;

    fn max_retries(&self) -> u32 {
        self.max_retries
    }

    fn wait(&self, _: u32, _: &NodeError) -> Duration {
        self.wait
    }

    async fn prep(&self, _: &Store, _: &Params) -> Result<(), NodeError> {
        Ok(())
    }

    async fn exec(&self, _: &()) -> Result<i64, NodeError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if attempt <= self.failures {
            Err(format!("attempt {attempt} failed").into())
        } else {
            Ok(i64::from(attempt))
        }
    }

    async fn exec_fallback(&self, _: &(), error: NodeError) -> Result<i64, NodeError> {
        self.fallbacks.fetch_add(1, Ordering::SeqCst);
        if self.fallback {
            assert_eq!(
                error.to_string(),
                "attempt 3 failed",
                "the last attempt's error"
            );
            Ok(-1)
        } else {
            Err(error)
        }
    }

    async fn post(
        &self,
        store: &mut Store,
        _: &Params,
        _: (),
        value: i64,
    ) -> Result<Action, NodeError> {
        store.value = value;
        Ok(Action::DEFAULT)
    }
}

#[tokio::test]
async fn an_always_failing_node_runs_exec_exactly_max_retries_times_then_falls_back() {
    let node = Flaky {
        fallback: true,
        ..Flaky::new(u32::MAX, 3)
    };
    let (attempts, fallbacks) = (node.attempts.clone(), node.fallbacks.clone());
    let mut store = Store::default();
    NodeRunner::new(node).run(&mut store).await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(fallbacks.load(Ordering::SeqCst), 1);
    assert_eq!(store.value, -1, "post received the fallback's value");
}

#[tokio::test]
async fn a_later_attempt_can_succeed_without_fallback() {
    let node = Flaky::new(2, 3);
    let (attempts, fallbacks) = (node.attempts.clone(), node.fallbacks.clone());
    let mut store = Store::default();
    NodeRunner::new(node).run(&mut store).await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(fallbacks.load(Ordering::SeqCst), 0);
    assert_eq!(store.value, 3, "post received the third attempt's value");
}

#[tokio::test]
async fn max_retries_zero_still_makes_one_attempt() {
    let node = Flaky::new(0, 0);
    let attempts = node.attempts.clone();
    NodeRunner::new(node)
        .run(&mut Store::default())
        .await
        .unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_wait_between_attempts_passes_in_virtual_time() {
    let node = Flaky {
        wait: Duration::from_millis(50),
        ..Flaky::new(u32::MAX, 3)
    };
    let attempts = node.attempts.clone();
    let started = Instant::now();
    let result = NodeRunner::new(node).run(&mut Store::default()).await;
    // Three attempts, two waits between them, none after the last.
    assert!(result.is_err());
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(started.elapsed(), Duration::from_millis(100));
}

#[tokio::test]
async fn without_a_fallback_the_error_stops_the_flow() {
    let mut flow = Flow::new();
    let flaky = flow.add(Flaky::new(u32::MAX, 2));
    let after = flow.add(say("after"));
    flow.next(flaky, after);

    let mut store = Store::default();
    let error = flow.run(&mut store).await.unwrap_err();
    match &error {
        FlowError::Node {
            node,
            phase,
            source,
        } => {
            assert!(
                node.ends_with("Flaky"),
                "default name is the type name: {node}"
            );
            assert_eq!(*phase, Phase::Exec);
            assert_eq!(source.to_string(), "attempt 2 failed");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(store.log.is_empty(), "the successor did not run");
}

/// Fails in the phase it is told to.
struct FailIn(Phase);

impl Node<Store> for FailIn {
    type Prep = ();
    type Exec = ();

    fn name(&self) -> &str {
        "fails"
    }

    async fn prep(&self, _: &Store, _: &Params) -> Result<(), NodeError> {
        if self.0 == Phase::Prep {
            Err("no".into())
        } else {
            Ok(())
        }
    }

    async fn exec(&self, _: &()) -> Result<(), NodeError> {
        if self.0 == Phase::Exec {
            Err("no".into())
        } else {
            Ok(())
        }
    }

    async fn post(&self, _: &mut Store, _: &Params, _: (), _: ()) -> Result<Action, NodeError> {
        if self.0 == Phase::Post {
            Err("no".into())
        } else {
            Ok(Action::DEFAULT)
        }
    }
}

#[tokio::test]
async fn errors_name_the_node_and_the_failing_phase() {
    for phase in [Phase::Prep, Phase::Exec, Phase::Post] {
        let error = NodeRunner::new(FailIn(phase))
            .run(&mut Store::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, FlowError::Node { node, phase: p, .. } if node == "fails" && *p == phase),
            "{error:?}"
        );
        assert_eq!(error.to_string(), format!("node `fails` failed in {phase}"));
    }
}

#[tokio::test]
async fn an_empty_or_miswired_flow_is_an_error_not_a_panic() {
    let empty = Flow::<Store>::named("empty");
    assert!(matches!(
        empty.run(&mut Store::default()).await,
        Err(FlowError::Empty { flow }) if flow == "empty"
    ));

    let mut other = Flow::<Store>::new();
    other.add(say("x"));
    let foreign = other.add(say("y"));
    let mut flow = Flow::new();
    let a = flow.add(say("a"));
    flow.next(a, foreign);
    assert!(matches!(
        flow.run(&mut Store::default()).await,
        Err(FlowError::UnknownNode { node, .. }) if node == foreign
    ));
}

/// Reads a value a previous node wrote, doubles it, writes it back.
struct Double;

impl Node<Store> for Double {
    type Prep = i64;
    type Exec = i64;

    async fn prep(&self, store: &Store, _: &Params) -> Result<i64, NodeError> {
        Ok(store.value)
    }

    async fn exec(&self, value: &i64) -> Result<i64, NodeError> {
        Ok(value * 2)
    }

    async fn post(
        &self,
        store: &mut Store,
        _: &Params,
        _: i64,
        doubled: i64,
    ) -> Result<Action, NodeError> {
        store.value = doubled;
        Ok(Action::DEFAULT)
    }
}

/// Writes a fixed value.
struct Write(i64);

impl Node<Store> for Write {
    type Prep = ();
    type Exec = ();

    async fn prep(&self, _: &Store, _: &Params) -> Result<(), NodeError> {
        Ok(())
    }

    async fn exec(&self, _: &()) -> Result<(), NodeError> {
        Ok(())
    }

    async fn post(&self, store: &mut Store, _: &Params, _: (), _: ()) -> Result<Action, NodeError> {
        store.value = self.0;
        Ok(Action::DEFAULT)
    }
}

#[tokio::test]
async fn later_nodes_see_what_earlier_nodes_wrote() {
    let mut flow = Flow::new();
    let write = flow.add(Write(21));
    let double = flow.add(Double);
    let again = flow.add(Double);
    flow.next(write, double).next(double, again);

    let mut store = Store::default();
    flow.run(&mut store).await.unwrap();
    assert_eq!(store.value, 84);
}

/// Multiplies each item by ten after sleeping `delay(item)`; item 0 fails
/// on its first attempt.
struct Times10 {
    items: Vec<i64>,
    delay: fn(i64) -> Duration,
    /// Items in the order `exec` started on them (attempts included).
    started: Arc<std::sync::Mutex<Vec<i64>>>,
}

impl Times10 {
    fn new(items: Vec<i64>, delay: fn(i64) -> Duration) -> Self {
        Times10 {
            items,
            delay,
            started: Arc::default(),
        }
    }

    fn started(&self) -> Arc<std::sync::Mutex<Vec<i64>>> {
        self.started.clone()
    }
}

impl BatchNode<Store> for Times10 {
    type Item = i64;
    type Output = i64;

    fn max_retries(&self) -> u32 {
        2
    }

    async fn prep(&self, _: &Store, _: &Params) -> Result<Vec<i64>, NodeError> {
        Ok(self.items.clone())
    }

    async fn exec(&self, item: &i64) -> Result<i64, NodeError> {
        let first_try = {
            let mut started = self.started.lock().map_err(|_| "poisoned")?;
            started.push(*item);
            started.iter().filter(|seen| *seen == item).count() == 1
        };
        tokio::time::sleep((self.delay)(*item)).await;
        if *item == 0 && first_try {
            return Err("zero fails once".into());
        }
        Ok(item * 10)
    }

    async fn post(
        &self,
        store: &mut Store,
        _: &Params,
        items: Vec<i64>,
        outputs: Vec<i64>,
    ) -> Result<Action, NodeError> {
        assert_eq!(items, self.items);
        store.outputs = outputs;
        Ok(Action::DEFAULT)
    }
}

#[tokio::test]
async fn a_batch_node_runs_items_in_order_each_with_retries() {
    let node = Times10::new(vec![3, 0, 1, 2], |_| Duration::ZERO);
    let started = node.started();
    let mut store = Store::default();
    NodeRunner::new(Batch(node)).run(&mut store).await.unwrap();
    assert_eq!(store.outputs, [30, 0, 10, 20]);
    assert_eq!(
        *started.lock().unwrap(),
        [3, 0, 0, 1, 2],
        "item 0 retried at once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_parallel_batch_overlaps_items_and_keeps_their_order() {
    let node = Times10::new((1..=10).collect(), |_| Duration::from_millis(100));
    let mut store = Store::default();
    let started = Instant::now();
    NodeRunner::new(ParallelBatch(node))
        .run(&mut store)
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(store.outputs, (1..=10).map(|i| i * 10).collect::<Vec<_>>());

    // Later items finishing first does not reorder the outputs.
    let node = Times10::new((1..=10).collect(), |item| {
        Duration::from_millis(10 * (11 - item as u64))
    });
    let started = Instant::now();
    NodeRunner::new(ParallelBatch(node))
        .run(&mut store)
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(store.outputs, (1..=10).map(|i| i * 10).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn the_same_batch_in_order_takes_the_sum_of_its_items() {
    let node = Times10::new((1..=10).collect(), |_| Duration::from_millis(100));
    let started = Instant::now();
    NodeRunner::new(Batch(node))
        .run(&mut Store::default())
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(1000));
}

/// One param set per file name; post records how many runs there were.
struct Files(&'static [&'static str]);

impl ParamSets<Store> for Files {
    async fn prep(&self, _: &Store, _: &Params) -> Result<Vec<Params>, NodeError> {
        Ok(self
            .0
            .iter()
            .map(|file| params(json!({ "file": file })))
            .collect())
    }

    async fn post(
        &self,
        store: &mut Store,
        _: &Params,
        sets: Vec<Params>,
    ) -> Result<Action, NodeError> {
        store.log.push(format!("{} runs", sets.len()));
        Ok("batched".into())
    }
}

/// Sleeps 100 ms in exec, then records the `file` param it ran with.
struct Process;

impl Node<Store> for Process {
    type Prep = String;
    type Exec = String;

    async fn prep(&self, _: &Store, params: &Params) -> Result<String, NodeError> {
        let file = params
            .get("file")
            .and_then(Value::as_str)
            .ok_or("no file param")?;
        Ok(file.to_owned())
    }

    async fn exec(&self, file: &String) -> Result<String, NodeError> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(format!("processed {file}"))
    }

    async fn post(
        &self,
        store: &mut Store,
        _: &Params,
        _: String,
        done: String,
    ) -> Result<Action, NodeError> {
        store.log.push(done);
        Ok(Action::DEFAULT)
    }
}

fn per_file_flow() -> Flow<Store> {
    let mut flow = Flow::named("per file").with_params(params(json!({"file": "overridden"})));
    let process = flow.add(Process);
    let see = flow.add(SeeParams);
    flow.next(process, see);
    flow
}

#[tokio::test(start_paused = true)]
async fn a_batch_flow_runs_its_flow_once_per_param_set_in_order() {
    let mut outer = Flow::new().with_params(params(json!({"user": "ada"})));
    outer.add_runnable(BatchFlow::new(per_file_flow(), Files(&["a", "b", "c"])));

    let mut store = Store::default();
    let started = Instant::now();
    let action = outer.run(&mut store).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(action, "batched");
    assert_eq!(
        store.log,
        ["processed a", "processed b", "processed c", "3 runs"]
    );
    let files: Vec<_> = store.seen.iter().map(|seen| seen["file"].clone()).collect();
    assert_eq!(files, [json!("a"), json!("b"), json!("c")]);
    assert!(store.seen.iter().all(|seen| seen["user"] == json!("ada")));
}

#[tokio::test(start_paused = true)]
async fn a_parallel_batch_flow_runs_all_sets_at_once_on_one_store() {
    let files = &["a", "b", "c", "d", "e"];
    let batch = ParallelBatchFlow::new(per_file_flow(), Files(files));

    let mut store = Store::default();
    let started = Instant::now();
    batch.run(&mut store).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(store.log.last().map(String::as_str), Some("5 runs"));
    let mut done = store.log[..5].to_vec();
    done.sort();
    assert_eq!(done, files.map(|file| format!("processed {file}")));
    assert_eq!(store.seen.len(), 5);
}

#[tokio::test]
async fn one_node_instance_can_be_shared_between_flows() {
    let shared: Arc<dyn Runnable<Store>> = Arc::new(NodeRunner::new(Double));
    let mut first = Flow::new();
    let write = first.add(Write(1));
    let double = first.add_runnable(shared.clone());
    first.next(write, double);
    let mut second = Flow::new();
    second.add_runnable(shared);

    let mut store = Store::default();
    first.run(&mut store).await.unwrap();
    second.run(&mut store).await.unwrap();
    assert_eq!(store.value, 4);
}

/// Counts `WARN` events on this thread while installed.
struct WarningCounter {
    warnings: Arc<AtomicUsize>,
    _guard: tracing::dispatcher::DefaultGuard,
}

struct CountWarnings(Arc<AtomicUsize>);

impl tracing::Subscriber for CountWarnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

impl WarningCounter {
    /// Works because `#[tokio::test]` runs the test on the current thread.
    fn install() -> Self {
        let warnings = Arc::new(AtomicUsize::new(0));
        let guard = tracing::subscriber::set_default(CountWarnings(warnings.clone()));
        WarningCounter {
            warnings,
            _guard: guard,
        }
    }

    fn count(&self) -> usize {
        self.warnings.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_run_is_a_send_future_that_can_be_spawned() {
    let mut flow = Flow::new();
    flow.add_runnable(ParallelBatchFlow::new(per_file_flow(), Files(&["a", "b"])));
    let task = tokio::spawn(async move {
        let mut store = Store::default();
        flow.run(&mut store).await.map(|_| store)
    });
    let store = task.await.unwrap().unwrap();
    assert_eq!(store.log.len(), 3);
}
