// SPDX-License-Identifier: Apache-2.0
//! What a SIGP order from one CPU does to another, decided from the target's architected
//! state (stopped or operating, orders it has not taken yet). Portable: the backend applies
//! the decision (injects through KVM, asks the VMM to wake the target's thread), and the
//! rules are tested on every target.
//!
//! A stopped CPU is a VMM-level vCPU state: its thread is parked by the VMM
//! (`arch::VcpuExit::Stopped`) and woken by `arch::VcpuExit::Wake` from the vCPU that left
//! it an order; it takes its orders on its own thread before it runs again.

use std::collections::VecDeque;

use crate::intercept::sigp;

/// What one vCPU asks another to do (SIGP orders the target performs on its own thread).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Start,
    Restart,
    InitialReset,
    CpuReset,
    SetPrefix(u64),
    StoreStatus(u64),
}

/// One CPU's architected run state and the orders waiting for it.
#[derive(Debug, Default)]
pub struct CpuState {
    /// Stopped (SIGP STOP, a reset, or not started yet): SIGP SENSE says so, and the
    /// machine powers off when every CPU is.
    pub stopped: bool,
    pub orders: VecDeque<Order>,
}

/// What to inject into an operating target (KVM does the rest in the kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inject {
    Restart,
    /// A stop interruption (KVM ends it with the target's stop intercept).
    Stop {
        store_status: bool,
    },
}

/// How the SIGP instruction ends for the CPU that issued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// The target has not taken its last order yet.
    Busy,
    /// Condition code 1 with this status in R1.
    Status(u32),
}

/// A SIGP order's effect on another CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effect {
    pub answer: Answer,
    pub inject: Option<Inject>,
    /// An order was queued: the target's thread must be woken if it is parked stopped.
    pub wake: bool,
}

/// Decide SIGP `order` (parameter `param`) sent to a CPU in `state`, in a machine with
/// `ram` bytes; queues what the target performs itself. Orders that need no other CPU
/// (SENSE and the external calls are KVM's) are not seen here.
pub fn decide(state: &mut CpuState, order: u8, param: u64, ram: u64) -> Effect {
    let answer = |answer| Effect {
        answer,
        inject: None,
        wake: false,
    };
    if !state.orders.is_empty() {
        return answer(Answer::Busy);
    }
    let stopped = state.stopped;
    let queue = |state: &mut CpuState, o| {
        state.orders.push_back(o);
        Effect {
            answer: Answer::Accepted,
            inject: None,
            wake: true,
        }
    };
    let inject = |i| Effect {
        answer: Answer::Accepted,
        inject: Some(i),
        wake: false,
    };
    match order {
        sigp::START if stopped => queue(state, Order::Start),
        sigp::START => answer(Answer::Accepted),
        sigp::RESTART if stopped => queue(state, Order::Restart),
        sigp::RESTART => inject(Inject::Restart),
        sigp::STOP_AND_STORE_STATUS if stopped => queue(
            state,
            Order::StoreStatus(crate::kvm::bindings::KVM_S390_STORE_STATUS_NOADDR),
        ),
        sigp::STOP if stopped => answer(Answer::Accepted),
        sigp::STOP | sigp::STOP_AND_STORE_STATUS => inject(Inject::Stop {
            store_status: order == sigp::STOP_AND_STORE_STATUS,
        }),
        // A reset leaves the CPU stopped: a running one is stopped first; the order
        // applies on its own thread.
        sigp::INITIAL_CPU_RESET | sigp::CPU_RESET => {
            let mut effect = queue(
                state,
                if order == sigp::CPU_RESET {
                    Order::CpuReset
                } else {
                    Order::InitialReset
                },
            );
            if !stopped {
                effect.inject = Some(Inject::Stop {
                    store_status: false,
                });
            }
            effect
        }
        sigp::SET_PREFIX if stopped => {
            let prefix = param & 0x7fff_e000;
            if prefix + 0x2000 > ram {
                answer(Answer::Status(sigp::STATUS_INVALID_PARAMETER))
            } else {
                queue(state, Order::SetPrefix(prefix))
            }
        }
        sigp::STORE_STATUS_AT_ADDRESS if stopped => {
            queue(state, Order::StoreStatus(param & 0x7fff_fe00))
        }
        sigp::SET_PREFIX | sigp::STORE_STATUS_AT_ADDRESS => {
            answer(Answer::Status(sigp::STATUS_INCORRECT_STATE))
        }
        _ => answer(Answer::Status(sigp::STATUS_INVALID_ORDER)),
    }
}

/// Take the orders waiting for this CPU, in order, applying the run-state changes they
/// make (START and RESTART end the stopped state); the caller performs each one through
/// KVM. Returns them and whether the CPU may run.
pub fn take(state: &mut CpuState) -> (Vec<Order>, bool) {
    let orders: Vec<Order> = state.orders.drain(..).collect();
    for o in &orders {
        if matches!(o, Order::Start | Order::Restart) {
            state.stopped = false;
        }
    }
    (orders, !state.stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: u64 = 64 << 20;

    fn stopped() -> CpuState {
        CpuState {
            stopped: true,
            orders: VecDeque::new(),
        }
    }

    #[test]
    fn start_and_restart_of_a_stopped_cpu_queue_and_wake_it() {
        for (order, queued) in [(sigp::START, Order::Start), (sigp::RESTART, Order::Restart)] {
            let mut s = stopped();
            let e = decide(&mut s, order, 0, RAM);
            assert_eq!(e.answer, Answer::Accepted);
            assert!(e.wake, "the parked thread must be woken");
            assert_eq!(e.inject, None);
            assert_eq!(s.orders, [queued]);
            // A second order before the target took the first: busy, nothing queued.
            assert_eq!(decide(&mut s, sigp::START, 0, RAM).answer, Answer::Busy);
            assert_eq!(s.orders.len(), 1);
            let (taken, runs) = take(&mut s);
            assert_eq!(taken, [queued]);
            assert!(runs && !s.stopped);
        }
    }

    #[test]
    fn orders_to_an_operating_cpu_go_through_kvm_or_do_nothing() {
        let mut s = CpuState::default();
        assert_eq!(
            decide(&mut s, sigp::START, 0, RAM),
            Effect {
                answer: Answer::Accepted,
                inject: None,
                wake: false
            }
        );
        assert_eq!(
            decide(&mut s, sigp::RESTART, 0, RAM).inject,
            Some(Inject::Restart)
        );
        assert_eq!(
            decide(&mut s, sigp::STOP_AND_STORE_STATUS, 0, RAM).inject,
            Some(Inject::Stop { store_status: true })
        );
        let e = decide(&mut s, sigp::STOP, 0, RAM);
        assert_eq!(
            e.inject,
            Some(Inject::Stop {
                store_status: false
            })
        );
        assert!(!e.wake);
        assert!(s.orders.is_empty());
        // SET PREFIX and STORE STATUS need a stopped CPU.
        for order in [sigp::SET_PREFIX, sigp::STORE_STATUS_AT_ADDRESS] {
            assert_eq!(
                decide(&mut s, order, 0x2000, RAM).answer,
                Answer::Status(sigp::STATUS_INCORRECT_STATE)
            );
        }
        assert_eq!(
            decide(&mut s, 0x77, 0, RAM).answer,
            Answer::Status(sigp::STATUS_INVALID_ORDER)
        );
    }

    #[test]
    fn a_reset_stops_a_running_cpu_and_leaves_it_stopped() {
        let mut s = CpuState::default();
        let e = decide(&mut s, sigp::INITIAL_CPU_RESET, 0, RAM);
        assert_eq!(
            e.inject,
            Some(Inject::Stop {
                store_status: false
            })
        );
        assert!(e.wake);
        s.stopped = true; // the stop intercept
        let (taken, runs) = take(&mut s);
        assert_eq!(taken, [Order::InitialReset]);
        assert!(!runs, "a reset CPU stays stopped until started");
    }

    #[test]
    fn stopped_cpu_orders_check_their_parameters() {
        let mut s = stopped();
        assert_eq!(
            decide(&mut s, sigp::SET_PREFIX, RAM, RAM).answer,
            Answer::Status(sigp::STATUS_INVALID_PARAMETER),
            "a prefix area past the end of RAM"
        );
        assert!(s.orders.is_empty());
        assert!(decide(&mut s, sigp::SET_PREFIX, 0x1_2345, RAM).wake);
        assert_eq!(s.orders, [Order::SetPrefix(0x1_2000)]);
        take(&mut s);
        assert!(decide(&mut s, sigp::STORE_STATUS_AT_ADDRESS, 0x3ff, RAM).wake);
        assert_eq!(s.orders, [Order::StoreStatus(0x200)]);
        take(&mut s);
        // STOP of a stopped CPU changes nothing; STOP AND STORE STATUS stores it.
        assert_eq!(decide(&mut s, sigp::STOP, 0, RAM).answer, Answer::Accepted);
        assert!(s.orders.is_empty());
        assert!(decide(&mut s, sigp::STOP_AND_STORE_STATUS, 0, RAM).wake);
        let (_, runs) = take(&mut s);
        assert!(!runs);
    }
}
