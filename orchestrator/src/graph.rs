//! Cycle finding for `dependsOn`.
//!
//! Reports one cycle per strongly connected component rather than every cycle: a tangle of
//! dependencies is one mistake to fix, and listing every cycle through it can take exponential
//! space. Everything is iterative, so a long chain of components cannot overflow the stack.

use std::collections::VecDeque;

const UNVISITED: usize = usize::MAX;

/// One cycle through each strongly connected component of the graph that has one (including a
/// node that is its own successor). Each cycle starts at the component's lowest-numbered node,
/// is as short as possible, and lists each node once; cycles come in order of that first node.
pub(crate) fn find_cycles(successors: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let components = strongly_connected_components(successors);
    let mut component_of = vec![0; successors.len()];
    for (id, members) in components.iter().enumerate() {
        for &member in members {
            component_of[member] = id;
        }
    }
    // Shared between searches (each only touches its own component) so that many small
    // components cost no more than one big one.
    let mut came_from = vec![UNVISITED; successors.len()];
    let mut cycles = Vec::new();
    for (id, members) in components.iter().enumerate() {
        let Some(&start) = members.iter().min() else {
            continue;
        };
        if members.len() == 1 && !successors[start].contains(&start) {
            continue;
        }
        let in_component = |node: usize| component_of[node] == id;
        cycles.extend(shortest_cycle(
            successors,
            start,
            in_component,
            &mut came_from,
        ));
        for &member in members {
            came_from[member] = UNVISITED;
        }
    }
    cycles.sort_by_key(|cycle| cycle.first().copied());
    cycles
}

/// Tarjan's algorithm with an explicit call stack.
fn strongly_connected_components(successors: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let count = successors.len();
    let mut order = vec![UNVISITED; count];
    let mut lowest = vec![0; count];
    let mut on_stack = vec![false; count];
    let mut stack = Vec::new();
    let mut next_order = 0;
    let mut components = Vec::new();
    for root in 0..count {
        if order[root] != UNVISITED {
            continue;
        }
        // (node, how many of its successors have been looked at)
        let mut calls = vec![(root, 0)];
        order[root] = next_order;
        lowest[root] = next_order;
        next_order += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(node, seen)) = calls.last() {
            if let Some(&next) = successors[node].get(seen) {
                if let Some(call) = calls.last_mut() {
                    call.1 += 1;
                }
                if order[next] == UNVISITED {
                    order[next] = next_order;
                    lowest[next] = next_order;
                    next_order += 1;
                    stack.push(next);
                    on_stack[next] = true;
                    calls.push((next, 0));
                } else if on_stack[next] {
                    lowest[node] = lowest[node].min(order[next]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(caller, _)) = calls.last() {
                lowest[caller] = lowest[caller].min(lowest[node]);
            }
            if lowest[node] == order[node] {
                let mut members = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    members.push(member);
                    if member == node {
                        break;
                    }
                }
                components.push(members);
            }
        }
    }
    components
}

/// The shortest path from `start` back to itself through nodes accepted by `allowed`, found
/// breadth first; `None` if there is none. `came_from` must be `UNVISITED` for those nodes.
fn shortest_cycle(
    successors: &[Vec<usize>],
    start: usize,
    allowed: impl Fn(usize) -> bool,
    came_from: &mut [usize],
) -> Option<Vec<usize>> {
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in &successors[node] {
            if next == start {
                let mut cycle = vec![node];
                let mut current = node;
                while current != start {
                    current = came_from[current];
                    cycle.push(current);
                }
                cycle.reverse();
                return Some(cycle);
            }
            if allowed(next) && came_from[next] == UNVISITED {
                came_from[next] = node;
                queue.push_back(next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acyclic_graphs_have_no_cycles() {
        assert!(find_cycles(&[vec![1], vec![2], vec![]]).is_empty());
        assert!(find_cycles(&[vec![1, 2], vec![2], vec![]]).is_empty());
    }

    #[test]
    fn finds_one_shortest_cycle_per_tangle() {
        // 0 -> 1 -> 2 -> 0 and 1 -> 0 (shorter); separately 3 <-> 4; 5 -> 5.
        let graph = [vec![1], vec![2, 0], vec![0], vec![4], vec![3], vec![5]];
        assert_eq!(find_cycles(&graph), vec![vec![0, 1], vec![3, 4], vec![5]]);
    }

    #[test]
    fn long_chains_do_not_overflow_the_stack() {
        let count = 200_000;
        let graph: Vec<Vec<usize>> = (0..count).map(|node| vec![(node + 1) % count]).collect();
        let cycles = find_cycles(&graph);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), count);
    }
}
