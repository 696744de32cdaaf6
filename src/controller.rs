//! Wires the reconcile pipeline into kube-runtime controllers, one per watched namespace (or one
//! for the whole cluster).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::{Controller, WatchStreamExt, controller, reflector, watcher};
use tracing::{debug, error, info, warn};

use crate::cache::WatchedCredential;
use crate::cache::relist::InPlaceRelist;
use crate::ops::shutdown::{DRAIN_GRACE, grace_after};
use crate::reconcile::{Context, WATCH_LAG, error_policy, reconcile};
use crate::setup::{CRD_INSTALL_HINT, is_crd_missing};

/// Runs the controllers until `shutdown` resolves, then drains in-flight reconciles for at most
/// [`DRAIN_GRACE`].
///
/// `resync` makes every credential be reconciled again each time it yields; production passes a
/// stream that never yields (timing comes from requeues), tests use it after moving their clock.
pub async fn run<R, S>(ctx: Arc<Context>, resync: R, shutdown: S)
where
    R: Stream<Item = ()> + Send + 'static,
    S: Future<Output = ()> + Send + Sync + 'static,
{
    let namespaces: Vec<Option<String>> = if ctx.config.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.config.namespaces.iter().cloned().map(Some).collect()
    };
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let resync = Broadcast::new(resync, namespaces.len());
    // Watchers that have not finished their first full list yet; /readyz waits for all.
    let unsynced = Arc::new(AtomicUsize::new(namespaces.len()));
    // A missing CRD is said once, for all namespaces: the watcher retries every few seconds,
    // and repeating the same advice at each retry buries it.
    let crd_missing_reported = Arc::new(AtomicBool::new(false));
    let controllers: Vec<_> = namespaces
        .into_iter()
        .zip(resync.receivers)
        .map(|(namespace, resync)| {
            // WatchedCredential keeps one undecodable object from failing the list of its whole
            // namespace (the reconciler reports it on its own), and is shared, not copied, between
            // the cache and the reconciler.
            let api: Api<WatchedCredential> = match &namespace {
                Some(ns) => Api::namespaced(ctx.client.clone(), ns),
                None => Api::all(ctx.client.clone()),
            };
            let config = controller::Config::default().concurrency(ctx.config.concurrency);
            // The reflector is built here rather than by Controller::new so readiness can be
            // read off the watch stream: Store::wait_until_ready wakes only one waiter, and that
            // one is the controller's own.
            let (reader, writer) = reflector::store();
            let (unsynced, health) = (unsynced.clone(), ctx.health.clone());
            let (reported, report) = (crd_missing_reported.clone(), crd_missing_reported.clone());
            let mut listed = false;
            let mut relist = InPlaceRelist::new(reader.clone());
            let objects = watcher(api, watcher::Config::default().any_semantic())
                .default_backoff()
                .flat_map(move |event| {
                    let events: Vec<_> = match event {
                        Ok(event) => relist.rewrite(event).into_iter().map(Ok).collect(),
                        Err(error) => vec![Err(error)],
                    };
                    futures::stream::iter(events)
                })
                .reflect(writer)
                .inspect(move |event| {
                    if !listed && matches!(event, Ok(watcher::Event::InitDone)) {
                        listed = true;
                        if reported.load(Ordering::SeqCst) {
                            info!("the DsqlCredential CRD is installed now: watching");
                        }
                        if unsynced.fetch_sub(1, Ordering::SeqCst) == 1 {
                            debug!("caches synced");
                            health.set_caches_synced();
                        }
                    }
                })
                .applied_objects();
            Controller::for_stream(objects, reader)
                .with_config(config)
                .reconcile_all_on(resync)
                .graceful_shutdown_on(shutdown.clone())
                .run(reconcile, error_policy, ctx.clone())
                .for_each(move |result| {
                    match result {
                        Ok((object, _)) => debug!(credential = %object, "reconciled"),
                        Err(controller::Error::QueueError(error)) if is_crd_missing(&error) => {
                            if report.swap(true, Ordering::SeqCst) {
                                debug!(error = %error, "DsqlCredential CRD still missing: waiting");
                            } else {
                                error!("the DsqlCredential CRD is not installed (the API server does not serve dsqlcredentials.dsql.credentials.dev): {CRD_INSTALL_HINT}; waiting for it");
                            }
                        }
                        Err(error) => warn!(error = %error, "controller error"),
                    }
                    futures::future::ready(())
                })
        })
        .collect();
    let pump = tokio::spawn(resync.pump);
    let sweeper = tokio::spawn(forget_expired_writes(ctx.clone()));
    // Graceful shutdown lets in-flight reconciles finish, but one may be waiting on a held AWS
    // call or an unreachable API server: past the grace period the controllers are dropped,
    // which cancels their reconciles.
    let drained = futures::future::join_all(controllers);
    tokio::select! {
        _ = drained => {}
        _ = grace_after(shutdown.clone(), DRAIN_GRACE) => {
            warn!(grace_ms = DRAIN_GRACE.as_millis() as u64, "in-flight reconciles outlasted the shutdown grace period: cancelled");
        }
    }
    pump.abort();
    sweeper.abort();
}

/// Every [`WATCH_LAG`], forgets the operator's own writes the cache has had time to show, so
/// what a mass rotation recorded does not stay until each credential's next rotation.
async fn forget_expired_writes(ctx: Arc<Context>) {
    let mut ticks = tokio::time::interval(WATCH_LAG);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        ctx.forget_expired_writes();
    }
}

/// Fans one resync stream out to each controller.
struct Broadcast {
    receivers: Vec<futures::channel::mpsc::UnboundedReceiver<()>>,
    pump: futures::future::BoxFuture<'static, ()>,
}

impl Broadcast {
    fn new<R: Stream<Item = ()> + Send + 'static>(source: R, n: usize) -> Self {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| futures::channel::mpsc::unbounded()).unzip();
        let pump = Box::pin(async move {
            let mut source = std::pin::pin!(source);
            while source.next().await.is_some() {
                for sender in &senders {
                    // A controller that has stopped no longer listens; nothing to do.
                    let _ = sender.unbounded_send(());
                }
            }
        });
        Self { receivers, pump }
    }
}
