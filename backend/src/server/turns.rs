//! Turns at heavy blocking work (cutout reads, PNG encodings, inferences, a
//! run's results read), one per core, handed out fairly: while several clients
//! wait, each gets the next turn in rotation, however many requests it has
//! queued. A class behind one address loading a page of images then shares
//! the cores with a user looking at one object, rather than queueing ahead of
//! them, and no client is refused a turn (an `<img>` load is not retried).

use super::client::Client;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The turns, and who waits for one.
pub struct Turns {
    queue: Mutex<Queue>,
}

struct Queue {
    /// Turns no one holds. Never above zero while anyone waits.
    free: usize,
    /// Each waiting client's requests, oldest first (never empty).
    waiting: HashMap<Option<Client>, Requests>,
    /// Whose turn comes next: each waiting client once, with the id of its
    /// `Requests`. An entry whose client has stopped waiting since (its
    /// requests served or gone) is stale, skipped, and cleared in bulk.
    rotation: VecDeque<(Option<Client>, u64)>,
    /// Ids for requests and their clients' places in the rotation.
    next_id: u64,
}

struct Requests {
    /// Its entry in the rotation.
    id: u64,
    queue: VecDeque<(u64, oneshot::Sender<Turn>)>,
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

/// A request waiting for its turn. Dropped unserved (its client went, or
/// its deadline passed), it leaves the queue at once; a turn sent to it
/// meanwhile goes back with the receiver.
struct Waiter {
    turns: Arc<Turns>,
    client: Option<Client>,
    id: u64,
    served: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.served {
            self.turns.lock().leave(self.client, self.id);
        }
    }
}

impl Turns {
    pub fn new(count: usize) -> Arc<Turns> {
        Arc::new(Turns {
            queue: Mutex::new(Queue {
                free: count.max(1),
                waiting: HashMap::new(),
                rotation: VecDeque::new(),
                next_id: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A turn for `client` (`None`: a caller the router could not name), at
    /// once where one is free, else in its client's rotation.
    pub async fn take(self: &Arc<Self>, client: Option<Client>) -> Turn {
        let (tx, mut rx) = oneshot::channel();
        let id = {
            let mut queue = self.lock();
            if queue.free > 0 {
                queue.free -= 1;
                return Turn {
                    turns: Some(self.clone()),
                };
            }
            queue.join(client, tx)
        };
        // Declared after `rx`, so dropped before it: the request leaves the
        // queue before a turn that reached it is given back.
        let mut waiter = Waiter {
            turns: self.clone(),
            client,
            id,
            served: false,
        };
        let turn = (&mut rx).await;
        waiter.served = true;
        // A sender leaves the queue only to be sent on, or by this waiter's own
        // drop: it cannot be gone unsent while the waiter waits.
        turn.unwrap_or(Turn { turns: None })
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
}

impl Queue {
    /// Queues request `tx` of `client`: behind its others, or as a client
    /// new to the rotation, at its back. Returns the request's id.
    fn join(&mut self, client: Option<Client>, tx: oneshot::Sender<Turn>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        match self.waiting.get_mut(&client) {
            Some(requests) => requests.queue.push_back((id, tx)),
            None => {
                self.waiting.insert(
                    client,
                    Requests {
                        id,
                        queue: VecDeque::from([(id, tx)]),
                    },
                );
                self.rotation.push_back((client, id));
                // Stale entries never outnumber live ones for long.
                if self.rotation.len() > 2 * self.waiting.len() + 16 {
                    let waiting = &self.waiting;
                    self.rotation
                        .retain(|(c, id)| waiting.get(c).is_some_and(|r| r.id == *id));
                }
            }
        }
        id
    }

    /// Request `id` of `client` gone before its turn.
    fn leave(&mut self, client: Option<Client>, id: u64) {
        if let Some(requests) = self.waiting.get_mut(&client) {
            requests.queue.retain(|(i, _)| *i != id);
            if requests.queue.is_empty() {
                self.waiting.remove(&client);
            }
        }
    }

    /// The next client's oldest request; that client then goes to the back
    /// while it has more.
    fn next_request(&mut self) -> Option<oneshot::Sender<Turn>> {
        while let Some((client, id)) = self.rotation.pop_front() {
            let Some(requests) = self.waiting.get_mut(&client).filter(|r| r.id == id) else {
                continue;
            };
            let Some((_, request)) = requests.queue.pop_front() else {
                self.waiting.remove(&client);
                continue;
            };
            if requests.queue.is_empty() {
                self.waiting.remove(&client);
            } else {
                self.rotation.push_back((client, id));
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
    use std::time::Duration;

    fn client(n: u16) -> Option<Client> {
        let [hi, lo] = n.to_be_bytes();
        Some(Client::of(IpAddr::V4(Ipv4Addr::new(10, 0, hi, lo))))
    }

    fn queued(turns: &Turns) -> usize {
        turns.lock().waiting.values().map(|r| r.queue.len()).sum()
    }

    async fn until(what: impl Fn() -> bool) {
        while !what() {
            tokio::task::yield_now().await;
        }
    }

    /// A lost turn would hang a test: each fails after a few seconds instead.
    async fn within<T>(test: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), test)
            .await
            .expect("the test waited for a turn that never came")
    }

    #[tokio::test]
    async fn waiting_clients_take_turns_in_rotation() {
        within(async {
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
                    tokio::task::yield_now().await;
                    drop(turn);
                }));
                let n = tasks.len();
                until(|| queued(&turns) == n).await;
            }
            drop(held);
            for task in tasks {
                task.await.unwrap();
            }
            // A plain queue would give a1, a2, a3, b1.
            assert_eq!(*order.lock().unwrap(), ["a1", "b1", "a2", "a3"]);
            assert_eq!(turns.lock().free, 1, "every turn given back");
        })
        .await
    }

    #[tokio::test]
    async fn a_request_gone_while_it_waited_leaves_the_queue_and_loses_no_turn() {
        within(async {
            let turns = Turns::new(1);
            let held = turns.take(client(1)).await;
            // Requests whose clients went (their futures dropped while they
            // waited), from many addresses: gone from the queue at once.
            for n in 2..200 {
                let mine = turns.clone();
                let gone = tokio::spawn(async move {
                    let _turn = mine.take(client(n)).await;
                    unreachable!("aborted before its turn");
                });
                until(|| queued(&turns) == 1).await;
                gone.abort();
                assert!(gone.await.unwrap_err().is_cancelled());
                assert_eq!(queued(&turns), 0);
            }
            // At most twice the clients waiting, and 16 more.
            assert!(turns.lock().rotation.len() <= 18, "stale entries cleared");
            let next = {
                let mine = turns.clone();
                tokio::spawn(async move { mine.take(client(300)).await })
            };
            until(|| queued(&turns) == 1).await;
            drop(held);
            let turn = next.await.unwrap();
            assert_eq!(turns.lock().free, 0);
            drop(turn);
            assert_eq!(turns.lock().free, 1);
        })
        .await
    }

    #[tokio::test]
    async fn a_turn_sent_to_a_request_that_then_went_comes_back() {
        within(async {
            let turns = Turns::new(1);
            let held = turns.take(client(1)).await;
            let waiting = {
                let mine = turns.clone();
                tokio::spawn(async move {
                    let _turn = mine.take(client(2)).await;
                    std::future::pending::<()>().await;
                })
            };
            until(|| queued(&turns) == 1).await;
            // The turn is sent before the waiting task runs again, then the
            // task is dropped with the turn unread in its channel.
            drop(held);
            waiting.abort();
            assert!(waiting.await.unwrap_err().is_cancelled());
            assert_eq!(turns.lock().free, 1);
            assert_eq!(queued(&turns), 0);
        })
        .await
    }

    #[tokio::test]
    async fn free_turns_are_taken_at_once_up_to_their_count() {
        within(async {
            let turns = Turns::new(2);
            let a = turns.take(client(1)).await;
            let b = turns.take(client(1)).await;
            assert_eq!(turns.lock().free, 0);
            drop((a, b));
            assert_eq!(turns.lock().free, 2);
            // A count of zero still gives one turn: work is never refused for good.
            assert_eq!(Turns::new(0).lock().free, 1);
        })
        .await
    }
}
