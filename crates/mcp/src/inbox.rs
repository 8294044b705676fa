//! Notifications from a server, routed to what they concern: progress to
//! the call whose progress token it carries, log messages to the calls in
//! flight, a changed tool list to the server's list (read again before the
//! next call).
//!
//! The routing happens in the transport ([`Tapped`]), as each message is
//! read and before the next one is: a notification the server sent before a
//! call's result is therefore routed before the call returns. (rmcp hands
//! notifications to its handler on a task of their own, which may run after
//! the result has been delivered, and the report would be lost.)

use rein_types::{LogLevel, ToolReport, ToolReporter};
use rmcp::RoleClient;
#[expect(
    deprecated,
    reason = "MCP log messages are deprecated (SEP-2577) but still sent by servers, and journaled"
)]
use rmcp::model::LoggingLevel;
use rmcp::model::{JsonRpcMessage, ProgressToken, RequestMetaObject, ServerNotification};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Progress for tokens no call has claimed yet, kept for a call that
/// registers just after its request went out.
const UNCLAIMED: usize = 16;

/// One server's routing table, shared by its successive connections.
#[derive(Default)]
pub(crate) struct Inbox {
    server: String,
    routes: Mutex<Routes>,
    /// The tool list may have changed (a `tools/list_changed`, a restart)
    /// since it was last read.
    tools_stale: AtomicBool,
}

#[derive(Default)]
struct Routes {
    /// The calls in flight that listen for reports, by progress token.
    calls: HashMap<ProgressToken, ToolReporter>,
    /// Progress that arrived before its call registered (the SDK assigns
    /// the token as it sends the request), oldest first.
    unclaimed: VecDeque<(ProgressToken, ToolReport)>,
}

impl Inbox {
    pub(crate) fn new(server: &str) -> Self {
        Self { server: server.to_owned(), tools_stale: AtomicBool::new(true), ..Self::default() }
    }

    /// Routes the reports of the call whose request carries `token` to
    /// `reporter` until the returned guard is dropped.
    pub(crate) fn register(self: &Arc<Self>, token: ProgressToken, reporter: ToolReporter) -> Registration {
        let early: Vec<ToolReport> = {
            let mut routes = self.routes();
            let mut early = Vec::new();
            routes.unclaimed.retain(|(t, report)| {
                let mine = *t == token;
                if mine {
                    early.push(report.clone());
                }
                !mine
            });
            routes.calls.insert(token.clone(), reporter.clone());
            early
        };
        for report in early {
            reporter.report(report);
        }
        Registration { inbox: self.clone(), token }
    }

    /// A new connection: tokens start again, so progress left unclaimed
    /// on the last one is dropped.
    pub(crate) fn reset(&self) {
        self.routes().unclaimed.clear();
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn mark_tools_stale(&self) {
        self.tools_stale.store(true, Ordering::Release);
    }

    /// Whether the tool list must be read again.
    pub(crate) fn tools_stale(&self) -> bool {
        self.tools_stale.load(Ordering::Acquire)
    }

    /// Whether the tool list must be read again; clears the mark.
    pub(crate) fn take_tools_stale(&self) -> bool {
        self.tools_stale.swap(false, Ordering::AcqRel)
    }

    #[expect(
        deprecated,
        reason = "MCP log messages are deprecated (SEP-2577) but still sent by servers, and journaled"
    )]
    fn observe(&self, notification: &ServerNotification) {
        match notification {
            ServerNotification::ProgressNotification(progress) => {
                let params = &progress.params;
                let report = ToolReport::Progress {
                    progress: params.progress,
                    total: params.total,
                    message: params.message.clone(),
                };
                let reporter = {
                    let mut routes = self.routes();
                    let reporter = routes.calls.get(&params.progress_token).cloned();
                    if reporter.is_none() {
                        if routes.unclaimed.len() == UNCLAIMED {
                            routes.unclaimed.pop_front();
                        }
                        routes.unclaimed.push_back((params.progress_token.clone(), report.clone()));
                    }
                    reporter
                };
                if let Some(reporter) = reporter {
                    reporter.report(report);
                }
            }
            ServerNotification::LoggingMessageNotification(log) => {
                let params = &log.params;
                let level = level(params.level);
                tracing::debug!(server = %self.server, level = level.as_str(), logger = ?params.logger,
                    data = %params.data, "MCP server log message");
                // A log message names no request: it goes to every call in
                // flight on this server (usually one).
                let reporters: Vec<ToolReporter> = self.routes().calls.values().cloned().collect();
                for reporter in reporters {
                    reporter.report(ToolReport::Log {
                        level,
                        logger: params.logger.clone(),
                        data: params.data.clone(),
                    });
                }
            }
            ServerNotification::ToolListChangedNotification(_) => {
                tracing::info!(server = %self.server, "MCP server says its tool list changed");
                self.mark_tools_stale();
            }
            _ => {}
        }
    }
}

/// A call's place in the [`Inbox`]; dropping it stops the routing.
pub(crate) struct Registration {
    inbox: Arc<Inbox>,
    token: ProgressToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inbox.routes().calls.remove(&self.token);
    }
}

/// The `_meta` of a call whose reports are wanted: for servers on the
/// 2026-07-28 protocol, which send log messages only to requests that ask,
/// an opt-in to log messages of every level. (The SDK adds the progress
/// token to every request itself.)
#[expect(deprecated, reason = "MCP log messages are deprecated (SEP-2577) but still sent by servers, and journaled")]
pub(crate) fn listening_meta() -> RequestMetaObject {
    let mut meta = RequestMetaObject::new();
    meta.set_log_level(LoggingLevel::Debug);
    meta
}

#[expect(deprecated, reason = "MCP log messages are deprecated (SEP-2577) but still sent by servers, and journaled")]
fn level(level: LoggingLevel) -> LogLevel {
    match level {
        LoggingLevel::Debug => LogLevel::Debug,
        LoggingLevel::Info => LogLevel::Info,
        LoggingLevel::Notice => LogLevel::Notice,
        LoggingLevel::Warning => LogLevel::Warning,
        LoggingLevel::Error => LogLevel::Error,
        LoggingLevel::Critical => LogLevel::Critical,
        LoggingLevel::Alert => LogLevel::Alert,
        LoggingLevel::Emergency => LogLevel::Emergency,
    }
}

/// A transport that shows each notification it reads to an [`Inbox`]
/// before passing it on.
pub(crate) struct Tapped<T> {
    inner: T,
    inbox: Arc<Inbox>,
}

impl<T> Tapped<T> {
    pub(crate) fn new(inner: T, inbox: Arc<Inbox>) -> Self {
        Self { inner, inbox }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Tapped<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await;
        if let Some(JsonRpcMessage::Notification(notification)) = &message {
            self.inbox.observe(&notification.notification);
        }
        message
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
