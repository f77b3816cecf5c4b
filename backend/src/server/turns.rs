//! Turns at heavy blocking work (cutout reads, PNG encodings, inferences, a
//! run's results read), one per core, handed out fairly: while several clients
//! wait, each gets the next turn in rotation, however many requests it has
//! queued. A class behind one address loading a page of images then shares
//! the cores with a user looking at one object, rather than queueing ahead of
//! them, and no client is refused a turn (an `<img>` load is not retried).

use super::client::Client;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The turns, and who waits for one.
pub struct Turns {
    queue: Mutex<Queue>,
}

struct Queue {
    /// Turns no one holds. Never above zero while anyone waits.
    free: usize,
    /// The clients waiting, in the order their next turn comes; each with its
    /// requests in the order they came.
    waiting: VecDeque<Waiting>,
}

struct Waiting {
    client: Option<Client>,
    requests: VecDeque<oneshot::Sender<Turn>>,
}

/// A turn: given back when dropped (it moves into the blocking task, so a
/// request that times out while its work runs does not free it early).
pub struct Turn {
    /// `None` once defused: a turn that could not be handed to a request gone meanwhile.
    turns: Option<Arc<Turns>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(turns) = self.turns.take() {
            turns.give_back();
        }
    }
}

impl Turns {
    pub fn new(count: usize) -> Arc<Turns> {
        Arc::new(Turns {
            queue: Mutex::new(Queue {
                free: count.max(1),
                waiting: VecDeque::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A turn for `client` (`None`: a caller the router could not name), at
    /// once where one is free, else in its client's rotation.
    pub async fn take(self: &Arc<Self>, client: Option<Client>) -> Turn {
        let (tx, rx) = oneshot::channel();
        {
            let mut queue = self.lock();
            if queue.free > 0 {
                queue.free -= 1;
                return Turn {
                    turns: Some(self.clone()),
                };
            }
            match queue.waiting.iter_mut().find(|w| w.client == client) {
                Some(waiting) => {
                    // Requests gone meanwhile (their clients left) go now, so a
                    // client cannot pile up dead entries while every turn is held.
                    waiting.requests.retain(|r| !r.is_closed());
                    waiting.requests.push_back(tx);
                }
                None => queue.waiting.push_back(Waiting {
                    client,
                    requests: VecDeque::from([tx]),
                }),
            }
        }
        match rx.await {
            Ok(turn) => turn,
            // Unreachable while the turns live (a sender is dropped only by
            // handing on its turn, or with the queue): wait for none then.
            Err(_) => Turn { turns: None },
        }
    }

    /// A turn given back: to the next client in rotation that still waits,
    /// else free.
    fn give_back(self: &Arc<Self>) {
        loop {
            let next = {
                let mut queue = self.lock();
                match queue.next_request() {
                    Some(next) => next,
                    None => {
                        queue.free += 1;
                        return;
                    }
                }
            };
            // Sent outside the lock: a send that fails gives the turn back here.
            match next.send(Turn {
                turns: Some(self.clone()),
            }) {
                Ok(()) => return,
                Err(mut turn) => turn.turns = None,
            }
        }
    }

    /// Turns free now (for tests and the health of the queue).
    #[cfg(test)]
    fn free(&self) -> usize {
        self.lock().free
    }
}

impl Queue {
    /// The first client's oldest request; that client then goes to the back.
    fn next_request(&mut self) -> Option<oneshot::Sender<Turn>> {
        while let Some(mut first) = self.waiting.pop_front() {
            let Some(request) = first.requests.pop_front() else {
                continue;
            };
            if !first.requests.is_empty() {
                self.waiting.push_back(first);
            }
            return Some(request);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn client(last: u8) -> Option<Client> {
        Some(Client::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))))
    }

    /// Each waiter records its name when it gets its turn, then holds it until told.
    #[tokio::test]
    async fn waiting_clients_take_turns_in_rotation() {
        let turns = Turns::new(1);
        let held = turns.take(client(1)).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // A greedy client queues three requests before another queues one.
        for (name, who) in [("a1", 1), ("a2", 1), ("a3", 1), ("b1", 2)] {
            let (mine, order) = (turns.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let turn = mine.take(client(who)).await;
                order.lock().unwrap().push(name);
                // Held a moment, so the next is handed on from here.
                tokio::task::yield_now().await;
                drop(turn);
            }));
            // Queued in this order.
            while turns
                .lock()
                .waiting
                .iter()
                .map(|w| w.requests.len())
                .sum::<usize>()
                < tasks.len()
            {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["a1", "b1", "a2", "a3"]);
        assert_eq!(turns.free(), 1, "every turn given back");
    }

    #[tokio::test]
    async fn a_request_gone_while_it_waited_loses_no_turn() {
        let turns = Turns::new(1);
        let held = turns.take(client(1)).await;
        // A request whose client went: its future dropped while it waited.
        let gone = {
            let turns = turns.clone();
            tokio::spawn(async move {
                let _turn = turns.take(client(2)).await;
                unreachable!("aborted before its turn");
            })
        };
        while turns.lock().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        let next = {
            let turns = turns.clone();
            tokio::spawn(async move { turns.take(client(3)).await })
        };
        while turns.lock().waiting.len() < 2 {
            tokio::task::yield_now().await;
        }
        drop(held);
        // The turn skips the request gone and reaches the next one.
        let turn = next.await.unwrap();
        assert_eq!(turns.free(), 0);
        drop(turn);
        assert_eq!(turns.free(), 1);
    }

    #[tokio::test]
    async fn free_turns_are_taken_at_once_up_to_their_count() {
        let turns = Turns::new(2);
        let a = turns.take(client(1)).await;
        let b = turns.take(client(1)).await;
        assert_eq!(turns.free(), 0);
        drop((a, b));
        assert_eq!(turns.free(), 2);
        // A count of zero still gives one turn: work is never refused for good.
        assert_eq!(Turns::new(0).free(), 1);
    }
}
