//! The processor graph: cycle detection and the order processors run in.

use super::PipelineConfig;

/// Processors ordered so that each comes after every processor it reads from (Kahn's
/// algorithm, ties broken by file order). Call only on a config without cycles.
pub fn processing_order(config: &PipelineConfig) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    while order.len() < config.processors.len() {
        let next = config.processors.iter().find(|(id, processor)| {
            !order.contains(id)
                && processor
                    .inputs
                    .iter()
                    .all(|input| !config.processors.contains_key(&input.id) || order.contains(&input.id))
        });
        match next {
            Some((id, _)) => order.push(id.clone()),
            None => break, // a cycle: reported by find_cycle
        }
    }
    order
}

/// A cycle among processors, as the ids along it (first id repeated at the end), if any.
pub fn find_cycle(config: &PipelineConfig) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(config: &PipelineConfig, id: &str, marks: &mut Vec<Mark>, path: &mut Vec<String>) -> Option<Vec<String>> {
        let index = config.processors.get_index_of(id)?;
        match marks[index] {
            Mark::Done => return None,
            Mark::OnPath => {
                let start = path.iter().position(|p| p == id).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(id.to_string());
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks[index] = Mark::OnPath;
        path.push(id.to_string());
        for input in &config.processors[index].inputs {
            if let Some(cycle) = visit(config, &input.id, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks[index] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; config.processors.len()];
    for id in config.processors.keys() {
        if let Some(cycle) = visit(config, id, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}
