//! Notifications the triggers send when their rows commit: one connection per listener,
//! made again after it breaks. Every reader also polls, so a notification lost meanwhile
//! only delays it.

use sqlx::postgres::PgListener;

use super::{Store, StoreError};

/// What a listener hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Outbox rows, for the mirror.
    Outbox,
    /// Events, for streams and waits.
    Events,
    /// Maintenance windows, for the leader's copy of them.
    Maintenance,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Self::Outbox => "extsvc_outbox",
            Self::Events => "extsvc_events",
            Self::Maintenance => "extsvc_maintenance",
        }
    }
}

/// The notifications of one channel.
pub struct Notifications {
    store: Store,
    channel: Channel,
    listener: Option<PgListener>,
}

impl Store {
    /// Notifications of `channel`, once [`Notifications::connect`] has connected.
    pub fn notifications(&self, channel: Channel) -> Notifications {
        Notifications {
            store: self.clone(),
            channel,
            listener: None,
        }
    }
}

impl Notifications {
    /// Connects unless connected already.
    pub async fn connect(&mut self) -> Result<(), StoreError> {
        if self.listener.is_some() {
            return Ok(());
        }
        let mut listener = PgListener::connect_with(&self.store.pool)
            .await
            .map_err(StoreError::Connect)?;
        listener
            .listen(self.channel.name())
            .await
            .map_err(StoreError::Connect)?;
        self.listener = Some(listener);
        Ok(())
    }

    /// The next notification: `true`, or `false` when the connection broke (the next
    /// [`Notifications::connect`] makes another). Never resolves while not connected.
    pub async fn next(&mut self) -> bool {
        let Some(listener) = self.listener.as_mut() else {
            return std::future::pending().await;
        };
        let heard = listener.recv().await.is_ok();
        if !heard {
            self.listener = None;
        }
        heard
    }
}
