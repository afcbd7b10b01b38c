//! Events as server-sent event streams, from every replica: one listener per replica
//! reads the events triggers record in PostgreSQL (woken by NOTIFY) and fans them out to
//! every stream and long poll it serves. A stream that reconnects with `Last-Event-ID`
//! gets what it missed from the table, which keeps an hour of events by default.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use crate::resource::ServiceEvent;
use crate::store::{Channel, Position, Store, StoreError, StoredEvent};

use super::caller::{InNamespace, ServicePath};
use super::{ApiError, Problem};

/// Events a slow subscriber may fall behind by before it reads them from the table.
const FAN_OUT_CAPACITY: usize = 1024;
/// How often the listener reads the table even without a notification (a notification
/// is lost while its connection is re-established).
const POLL_EVERY: Duration = Duration::from_secs(2);
/// How soon it reads again when newer events wait for an older transaction to end.
const HELD_BACK_RETRY: Duration = Duration::from_millis(20);
const BATCH: i64 = 500;
/// A comment on an idle stream this often keeps proxies from closing it and tells a
/// closed connection from a quiet one.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How often events older than the retention are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// Replays reading the table at once, per replica: more wait their turn, so that they
/// never take the connections the reader of new events needs.
const REPLAYS_AT_ONCE: usize = 2;
/// A stream ends after this; clients reconnect with `Last-Event-ID` (EventSource does so
/// by itself), which authenticates them again: a revoked token stops receiving.
const STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// The longest the reader waits between reads while newer events wait for an older
/// transaction (it starts at `HELD_BACK_RETRY` and doubles).
const MAX_HELD_BACK_RETRY: Duration = Duration::from_secs(1);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/namespaces/{namespace}/external-services/{name}/events")
            .route(web::get().to(service_events))
            .default_service(super::method_not_allowed("GET")),
    )
    .service(
        web::resource("/api/v1/namespaces/{namespace}/events")
            .route(web::get().to(namespace_events))
            .default_service(super::method_not_allowed("GET")),
    );
}

/// This replica's view of the events table, shared by every stream and long poll.
#[derive(Clone)]
pub struct Feed {
    sender: broadcast::Sender<Arc<StoredEvent>>,
    /// The last event handed to `sender`; moved before it is sent.
    position: watch::Receiver<Position>,
    /// One permit per open stream or long poll.
    watches: Arc<Semaphore>,
    /// Replays read the table with connections of their own, a few at once.
    replays: Store,
    replaying: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl Feed {
    /// Starts reading events recorded from now on with `store`; runs until `shutdown`.
    /// Events older than `retention` are dropped along the way. Replays use `replays`.
    pub async fn start(
        (store, replays): (Store, Store),
        max_watches: usize,
        retention: chrono::Duration,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let start = store.last_event_position().await?;
        let (sender, _) = broadcast::channel(FAN_OUT_CAPACITY);
        let (position_sender, position) = watch::channel(start);
        tokio::spawn(listen(
            store.clone(),
            sender.clone(),
            position_sender,
            shutdown.clone(),
        ));
        tokio::spawn(prune(store.clone(), retention, shutdown.clone()));
        Ok(Self {
            sender,
            position,
            watches: Arc::new(Semaphore::new(max_watches)),
            replays,
            replaying: Arc::new(Semaphore::new(REPLAYS_AT_ONCE)),
            shutdown,
        })
    }

    /// Events of `scope` from now on, or after `after` when given (as far back as the
    /// table still holds them). Refused with 503 when this replica holds as many
    /// streams and long polls as it may.
    pub async fn subscribe(
        &self,
        scope: Scope,
        after: Option<Position>,
    ) -> Result<Subscription, ApiError> {
        let permit = self.watches.clone().try_acquire_owned().map_err(|_| {
            ApiError::Unavailable(
                "this server holds as many event streams and waits as it may (--max-watches); try again shortly"
                    .to_owned(),
            )
        })?;
        // Subscribed before the position is read, so that every event after it arrives.
        let receiver = self.sender.subscribe();
        let now = *self.position.borrow();
        Ok(Subscription {
            receiver,
            // A client that saw more than this replica has read yet gets nothing twice.
            floor: after.map_or(now, |after| after.max(now)),
            backlog: VecDeque::new(),
            replay: after.filter(|after| *after < now).map(|after| (after, now)),
            scope,
            feed: self.clone(),
            _permit: permit,
        })
    }
}

/// Reads final events in order and hands each to every subscriber.
async fn listen(
    store: Store,
    sender: broadcast::Sender<Arc<StoredEvent>>,
    position: watch::Sender<Position>,
    shutdown: CancellationToken,
) {
    let mut notifications = store.notifications(Channel::Events);
    let mut last = *position.borrow();
    let mut held_back_retry = HELD_BACK_RETRY;
    loop {
        if let Err(error) = notifications.connect().await {
            tracing::warn!(error = %crate::telemetry::chain(&error), "events: could not listen for notifications; polling");
        }
        let mut held_back = false;
        loop {
            match store.events_after(last, BATCH).await {
                Ok(batch) => {
                    held_back = batch.held_back;
                    let full = batch.events.len() as i64 == BATCH;
                    for event in batch.events {
                        last = event.position;
                        position.send_replace(last);
                        // No subscriber is no error.
                        let _ = sender.send(Arc::new(event));
                    }
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %crate::telemetry::chain(&error), "events: could not read events");
                    break;
                }
            }
        }
        // Held back by a transaction that is still running: look again soon, then less
        // and less often while it runs on.
        let pause = if held_back {
            let pause = held_back_retry;
            held_back_retry = (held_back_retry * 2).min(MAX_HELD_BACK_RETRY);
            pause
        } else {
            held_back_retry = HELD_BACK_RETRY;
            POLL_EVERY
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
            heard = notifications.next() => {
                if !heard {
                    tracing::warn!("events: lost the notification connection");
                }
            }
        }
    }
}

async fn prune(store: Store, retention: chrono::Duration, shutdown: CancellationToken) {
    super::keep_pruning(PRUNE_EVERY, retention, shutdown, "events", |cutoff| {
        let store = store.clone();
        async move { store.prune_events(cutoff).await }
    })
    .await;
}

/// Whose events a subscriber wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub namespace: String,
    /// Every registration of the namespace when `None`.
    pub name: Option<String>,
}

impl Scope {
    fn covers(&self, event: &ServiceEvent) -> bool {
        event.namespace == self.namespace
            && self.name.as_ref().is_none_or(|name| *name == event.name)
    }
}

/// The events of one scope, in order, each once.
pub struct Subscription {
    receiver: broadcast::Receiver<Arc<StoredEvent>>,
    /// Events at or before this came, or will come, from the table.
    floor: Position,
    backlog: VecDeque<StoredEvent>,
    /// Events still to read from the table, a page at a time: after the first position,
    /// up to the second.
    replay: Option<(Position, Position)>,
    scope: Scope,
    feed: Feed,
    _permit: OwnedSemaphorePermit,
}

impl Subscription {
    /// The next event; `None` once the server stops. Cancelling it loses nothing: what is
    /// still to replay stays marked until a page of it is read.
    pub async fn next(&mut self) -> Result<Option<StoredEvent>, StoreError> {
        loop {
            if let Some(event) = self.replayed().await? {
                return Ok(Some(event));
            }
            let received = tokio::select! {
                () = self.feed.shutdown.cancelled() => return Ok(None),
                received = self.receiver.recv() => received,
            };
            match received {
                Ok(event) if event.position > self.floor && self.scope.covers(&event.event) => {
                    self.floor = event.position;
                    return Ok(Some(StoredEvent::clone(&event)));
                }
                Ok(_) => {}
                // Fell behind the fan-out: what it skipped is in the table.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let now = *self.feed.position.borrow();
                    if self.floor < now {
                        self.replay = Some((self.floor, now));
                        self.floor = now;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }

    /// The next event of the replay, a page read from the table when the last is used up;
    /// `None` once the replay is done.
    async fn replayed(&mut self) -> Result<Option<StoredEvent>, StoreError> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                return Ok(Some(event));
            }
            let Some((after, upto)) = self.replay else {
                return Ok(None);
            };
            let page = {
                let _turn = self.feed.replaying.acquire().await;
                let (namespace, name) = (&self.scope.namespace, self.scope.name.as_deref());
                self.feed
                    .replays
                    .replay_events(namespace, name, after, upto, BATCH)
                    .await?
            };
            self.replay = match page.last() {
                Some(last) if page.len() as i64 == BATCH => Some((last.position, upto)),
                _ => None,
            };
            self.backlog.extend(page);
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Resume after this event id, like the `Last-Event-ID` header (which wins).
    #[serde(rename = "lastEventId")]
    #[param(rename = "lastEventId")]
    last_event_id: Option<String>,
    /// `false`: end the stream once it has sent what it replays (with `lastEventId=0-0`,
    /// every event still kept) instead of staying open.
    #[param(value_type = Option<bool>)]
    follow: Option<String>,
}

impl StreamParams {
    fn follow(&self) -> Result<bool, ApiError> {
        super::flag("follow", self.follow.as_deref(), true)
    }
}

/// Where a stream resumes: `Last-Event-ID`, else `lastEventId`.
fn resume_after(
    request: &HttpRequest,
    params: &StreamParams,
) -> Result<Option<Position>, ApiError> {
    let header = request
        .headers()
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("?").to_owned());
    let Some(text) = header.or_else(|| params.last_event_id.clone()) else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|()| ApiError::BadParameter {
        parameter: "Last-Event-ID",
        detail: "must be the id of an event this API sent, like 7514-210".to_owned(),
    })
}

/// One event as the stream writes it.
fn frame(event: &ServiceEvent) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_default();
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        event.id, event.type_
    ))
}

/// The stream of a subscription: events, and a comment now and then while it is quiet.
/// Without `follow`, it ends after what it replays; with it, after [`STREAM_LIFETIME`].
fn stream(subscription: Subscription, follow: bool) -> HttpResponse {
    let ends = tokio::time::Instant::now() + STREAM_LIFETIME;
    let body = futures::stream::unfold(
        (subscription, true),
        move |(mut subscription, first)| async move {
            if first {
                // Tells EventSource how soon to reconnect.
                return Some((
                    Ok(Bytes::from_static(b"retry: 2000\n\n")),
                    (subscription, false),
                ));
            }
            if !follow {
                let event = match subscription.replayed().await {
                    Ok(event) => event?,
                    Err(error) => {
                        tracing::warn!(error = %crate::telemetry::chain(&error), "events: a replay failed; ending it");
                        return None;
                    }
                };
                return Some((Ok(frame(&event.event)), (subscription, false)));
            }
            if tokio::time::Instant::now() >= ends {
                return None;
            }
            let next = tokio::time::timeout(KEEPALIVE, subscription.next()).await;
            let chunk = match next {
                Ok(Ok(Some(event))) => frame(&event.event),
                Ok(Ok(None)) => return None,
                Ok(Err(error)) => {
                    tracing::warn!(error = %crate::telemetry::chain(&error), "events: a stream could not catch up; ending it");
                    return None;
                }
                Err(_) => Bytes::from_static(b": keepalive\n\n"),
            };
            Some((Ok::<_, actix_web::Error>(chunk), (subscription, false)))
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tells nginx not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// Events of an external service
///
/// A `text/event-stream` (server-sent events) of what happens to the service: mirrored
/// to the cluster, reconciled (or a name conflict, or a failure), each address's and
/// each check's readiness, maintenance, deletion. Each event's `id` can be sent back as
/// `Last-Event-ID` on reconnecting to receive what was missed (events are kept an hour
/// by default). The stream stays open; a comment arrives every 15 s while it is quiet.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/external-services/{name}/events",
    tag = "events",
    params(
        ("namespace" = String, Path, description = "Namespace of the service"),
        ("name" = String, Path, description = "Name of the service"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event"),
        StreamParams,
    ),
    responses(
        (status = 200, description = "The stream; each `data:` is a ServiceEvent", body = ServiceEvent, content_type = "text/event-stream"),
        (status = 400, description = "A bad Last-Event-ID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams open on this server", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn service_events(
    request: HttpRequest,
    path: ServicePath,
    params: web::Query<StreamParams>,
    store: web::Data<Store>,
    feed: web::Data<Feed>,
) -> Result<HttpResponse, ApiError> {
    path.readable()?;
    let follow = params.follow()?;
    let after = resume_after(&request, &params)?;
    // A stream of a name that was deleted a moment ago still replays its last events.
    if after.is_none()
        && store
            .find_service(&path.namespace, &path.name)
            .await
            .map_err(ApiError::Store)?
            .is_none()
    {
        return Err(ApiError::NotFound {
            namespace: path.namespace.clone(),
            name: path.name.clone(),
        });
    }
    let scope = Scope {
        namespace: path.namespace.clone(),
        name: Some(path.name.clone()),
    };
    Ok(stream(feed.subscribe(scope, after).await?, follow))
}

/// Events of every external service in a namespace
///
/// As the events of one service, for every service of the namespace.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/events",
    tag = "events",
    params(
        ("namespace" = String, Path, description = "The namespace"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event"),
        StreamParams,
    ),
    responses(
        (status = 200, description = "The stream; each `data:` is a ServiceEvent", body = ServiceEvent, content_type = "text/event-stream"),
        (status = 400, description = "A bad Last-Event-ID or namespace", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams open on this server", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn namespace_events(
    request: HttpRequest,
    path: InNamespace,
    params: web::Query<StreamParams>,
    feed: web::Data<Feed>,
) -> Result<HttpResponse, ApiError> {
    path.caller
        .may_list(&path.namespace)
        .map_err(|refusal| ApiError::refused(refusal, &path.namespace, ""))?;
    let follow = params.follow()?;
    let after = resume_after(&request, &params)?;
    let scope = Scope {
        namespace: path.namespace,
        name: None,
    };
    Ok(stream(feed.subscribe(scope, after).await?, follow))
}
