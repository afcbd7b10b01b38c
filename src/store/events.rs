//! The events triggers record with every change (see the migration `events`), read in
//! the order they became final.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::resource::ServiceEvent;

use super::{Store, StoreError};

/// Where an event stands: events are read in (transaction, id) order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub txid: i64,
    pub id: i64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.txid, self.id)
    }
}

impl std::str::FromStr for Position {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (txid, id) = text.trim().split_once('-').ok_or(())?;
        Ok(Self {
            txid: txid.parse().map_err(drop)?,
            id: id.parse().map_err(drop)?,
        })
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub position: Position,
    pub event: ServiceEvent,
}

/// Events read after a position: those that are final, and whether later ones exist
/// that are not yet (a transaction older than them is still running).
#[derive(Debug, Default)]
pub struct EventBatch {
    pub events: Vec<StoredEvent>,
    pub held_back: bool,
}

struct EventRow {
    id: i64,
    txid: i64,
    at: DateTime<Utc>,
    namespace: String,
    name: String,
    type_: String,
    generation: Option<i64>,
    detail: serde_json::Value,
    settled: bool,
}

impl EventRow {
    fn into_event(self) -> StoredEvent {
        let position = Position {
            txid: self.txid,
            id: self.id,
        };
        StoredEvent {
            position,
            event: ServiceEvent {
                id: position.to_string(),
                time: self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                namespace: self.namespace,
                name: self.name,
                type_: self.type_,
                generation: self.generation,
                detail: self.detail,
            },
        }
    }
}

impl Store {
    /// The position of the last final event: a reader starting now starts after it.
    pub async fn last_event_position(&self) -> Result<Position, StoreError> {
        let row = sqlx::query!(
            r#"SELECT txid, id FROM service_events
               WHERE txid < (SELECT event_horizon())
               ORDER BY txid DESC, id DESC LIMIT 1"#
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::ReadEvents)?;
        Ok(row.map_or_else(Position::default, |row| Position {
            txid: row.txid,
            id: row.id,
        }))
    }

    /// Up to `limit` events after `after`, of every registration, in order; only those
    /// no transaction running in this database can still precede.
    pub async fn events_after(
        &self,
        after: Position,
        limit: i64,
    ) -> Result<EventBatch, StoreError> {
        let rows = sqlx::query_as!(
            EventRow,
            r#"SELECT id, txid, at, namespace, name, type AS type_, generation, detail,
                      txid < (SELECT event_horizon()) AS "settled!"
               FROM service_events WHERE (txid, id) > ($1, $2)
               ORDER BY txid, id LIMIT $3"#,
            after.txid,
            after.id,
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::ReadEvents)?;
        let mut batch = EventBatch::default();
        for row in rows {
            if !row.settled {
                batch.held_back = true;
                break;
            }
            batch.events.push(row.into_event());
        }
        Ok(batch)
    }

    /// Up to `limit` events of one namespace (and one name, if given) after `after` and
    /// up to `upto`, in order: what a stream that reconnects has missed.
    pub async fn replay_events(
        &self,
        namespace: &str,
        name: Option<&str>,
        after: Position,
        upto: Position,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query_as!(
            EventRow,
            r#"SELECT id, txid, at, namespace, name, type AS type_, generation, detail,
                      true AS "settled!"
               FROM service_events
               WHERE namespace = $1 AND ($2::text IS NULL OR name = $2)
                 AND (txid, id) > ($3, $4) AND (txid, id) <= ($5, $6)
               ORDER BY txid, id LIMIT $7"#,
            namespace,
            name,
            after.txid,
            after.id,
            upto.txid,
            upto.id,
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::ReadEvents)?;
        Ok(rows.into_iter().map(EventRow::into_event).collect())
    }

    /// Drops events recorded before `cutoff`, a batch at a time; how many went.
    pub async fn prune_events(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        sqlx::query!(
            "DELETE FROM service_events WHERE id IN (
                 SELECT id FROM service_events WHERE at < $1 ORDER BY at LIMIT 10000)",
            cutoff
        )
        .execute(&self.pool)
        .await
        .map(|done| done.rows_affected())
        .map_err(StoreError::WriteEvents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_back_what_it_writes() {
        let position = Position {
            txid: 7514,
            id: 210,
        };
        assert_eq!(position.to_string().parse(), Ok(position));
        assert_eq!("x-1".parse::<Position>(), Err(()));
        assert_eq!("12".parse::<Position>(), Err(()));
        assert!(Position { txid: 2, id: 1 } > Position { txid: 1, id: 9 });
    }
}
