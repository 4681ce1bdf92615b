//! The session's transaction and the rules of its life cycle, as PostgreSQL keeps them.
//!
//! A session is in one of four states: no transaction (autocommit: each statement commits on
//! its own), an *implicit* transaction (the statements of one multi-statement query string,
//! committed together at its end), an explicit *block* (`BEGIN` … `COMMIT`/`ROLLBACK`), or a
//! *failed* block (a statement inside it failed: everything but `ROLLBACK`, `COMMIT` — which
//! then rolls back — and `ROLLBACK TO SAVEPOINT` gets 25P02). [`TransactionSlot`] is the only
//! way to read or change that state; its lock is held for the length of one method call
//! (never across an `.await`).

use parking_lot::Mutex;

use super::Transaction;
use crate::storage::WriteOp;

/// The transaction of a session, if one is open (see the module comment).
#[derive(Debug, Default)]
pub struct TransactionSlot(Mutex<Option<Transaction>>);

impl TransactionSlot {
    /// Whether a transaction (implicit or explicit) is open.
    pub fn is_open(&self) -> bool {
        self.0.lock().is_some()
    }

    /// Whether an explicit block is open.
    pub fn in_block(&self) -> bool {
        matches!(&*self.0.lock(), Some(t) if t.explicit)
    }

    /// Whether an explicit block failed (its statements get 25P02).
    pub fn block_failed(&self) -> bool {
        matches!(&*self.0.lock(), Some(t) if t.explicit && t.failed)
    }

    /// Whether the open transaction was begun `READ ONLY`.
    pub fn read_only(&self) -> bool {
        matches!(&*self.0.lock(), Some(t) if t.read_only)
    }

    /// The pending operations of the open transaction on a table (copied: they are cheap
    /// handles to the rows); `None` when it has none.
    pub fn pending_ops(&self, table_oid: u32) -> Option<Vec<WriteOp>> {
        self.0
            .lock()
            .as_ref()
            .and_then(|t| t.ops_for(table_oid).map(<[_]>::to_vec))
    }

    /// Runs `f` on the open transaction; `None` when there is none.
    pub fn with<T>(&self, f: impl FnOnce(&mut Transaction) -> T) -> Option<T> {
        self.0.lock().as_mut().map(f)
    }

    /// Runs `f` on the open explicit block; `None` outside one.
    pub fn with_block<T>(&self, f: impl FnOnce(&mut Transaction) -> T) -> Option<T> {
        self.0.lock().as_mut().filter(|t| t.explicit).map(f)
    }

    /// `BEGIN`: opens a block, or turns an implicit transaction into one. False, changing
    /// nothing, when a block is open already.
    pub fn begin(&self, read_only: bool) -> bool {
        let mut slot = self.0.lock();
        match slot.as_mut() {
            Some(t) if t.explicit => false,
            Some(t) => {
                t.explicit = true;
                t.read_only = read_only;
                true
            }
            None => {
                *slot = Some(Transaction::explicit(read_only));
                true
            }
        }
    }

    /// Opens an implicit transaction if none is open; whether it did.
    pub fn open_implicit(&self) -> bool {
        let mut slot = self.0.lock();
        if slot.is_some() {
            return false;
        }
        *slot = Some(Transaction::default());
        true
    }

    /// Ends the open transaction (to commit or roll it back), handing it over.
    pub fn take(&self) -> Option<Transaction> {
        self.0.lock().take()
    }

    /// Ends the open transaction if it is implicit, handing it over.
    pub fn take_implicit(&self) -> Option<Transaction> {
        let mut slot = self.0.lock();
        match slot.as_ref() {
            Some(t) if !t.explicit => slot.take(),
            _ => None,
        }
    }

    /// A statement failed: an explicit block now only accepts its end, an implicit
    /// transaction is abandoned.
    pub fn statement_failed(&self) {
        let mut slot = self.0.lock();
        match slot.as_mut() {
            Some(t) if t.explicit => t.failed = true,
            Some(_) => *slot = None,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_follows_postgres_life_cycle() {
        let slot = TransactionSlot::default();
        assert!(!slot.is_open() && !slot.in_block());
        // A failure outside a transaction changes nothing.
        slot.statement_failed();
        assert!(!slot.is_open());
        // An implicit transaction is abandoned by a failure.
        assert!(slot.open_implicit());
        assert!(!slot.open_implicit());
        assert!(slot.is_open() && !slot.in_block());
        slot.statement_failed();
        assert!(!slot.is_open());
        // BEGIN inside an implicit transaction makes it a block; a second BEGIN is refused.
        assert!(slot.open_implicit());
        assert!(slot.begin(true));
        assert!(slot.in_block() && slot.read_only());
        assert!(!slot.begin(false));
        assert!(slot.take_implicit().is_none(), "a block is not implicit");
        // A failed block stays open, failed, until it is ended.
        slot.statement_failed();
        assert!(slot.block_failed() && slot.is_open());
        assert_eq!(slot.with_block(|t| t.failed), Some(true));
        let ended = slot.take().expect("the block");
        assert!(ended.explicit && ended.failed);
        assert!(!slot.is_open() && !slot.block_failed());
        assert_eq!(slot.with(|_| ()), None);
        assert!(slot.open_implicit());
        assert!(slot.take_implicit().is_some());
    }
}
