//! The columns every read of LLM calls selects from `costplane_usage_llm`,
//! in select order: one list for the SQL (`usage::llm_columns`), the JSON
//! cell reader (`usage::llm_row`) and the Arrow reader (`usage_arrow`), so
//! a column added or moved is one edit here, and each reader finds a value
//! by the column's name rather than by a number kept in step by hand.

use crate::Dialect;

/// One selected column; its discriminant is its position in the select list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LlmColumn {
    Timestamp,
    ReceivedAt,
    Tenant,
    Project,
    Service,
    TraceId,
    SpanId,
    Provider,
    Model,
    Operation,
    InputTokens,
    OutputTokens,
    CacheReadTokens,
    CacheWriteTokens,
    ReasoningTokens,
    ProvidedCost,
    CallKind,
    InvalidReason,
    Hour,
    CacheWrite1hTokens,
}

use LlmColumn::*;

impl LlmColumn {
    /// Every column, in select order.
    pub(crate) const ALL: [LlmColumn; 20] = [
        Timestamp,
        ReceivedAt,
        Tenant,
        Project,
        Service,
        TraceId,
        SpanId,
        Provider,
        Model,
        Operation,
        InputTokens,
        OutputTokens,
        CacheReadTokens,
        CacheWriteTokens,
        ReasoningTokens,
        ProvidedCost,
        CallKind,
        InvalidReason,
        Hour,
        CacheWrite1hTokens,
    ];

    /// Its position in the select list (and in a read row).
    pub(crate) const fn at(self) -> usize {
        self as usize
    }

    /// The table's column name.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Timestamp => "Timestamp",
            ReceivedAt => "ReceivedAt",
            Tenant => "Tenant",
            Project => "Project",
            Service => "Service",
            TraceId => "TraceId",
            SpanId => "SpanId",
            Provider => "Provider",
            Model => "Model",
            Operation => "Operation",
            InputTokens => "InputTokens",
            OutputTokens => "OutputTokens",
            CacheReadTokens => "CacheReadTokens",
            CacheWriteTokens => "CacheWriteTokens",
            ReasoningTokens => "ReasoningTokens",
            ProvidedCost => "ProvidedCost",
            CallKind => "CallKind",
            InvalidReason => "InvalidReason",
            Hour => "Hour",
            CacheWrite1hTokens => "CacheWrite1hTokens",
        }
    }

    /// Times, selected as ns since the epoch.
    const fn is_time(self) -> bool {
        matches!(self, Timestamp | ReceivedAt | Hour)
    }
}

/// The select list, time columns as ns in `dialect`.
pub(crate) fn select_list(dialect: Dialect) -> String {
    LlmColumn::ALL.iter().map(|c| if c.is_time() { dialect.ns(c.name()) } else { c.name().to_owned() }).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_column_sits_at_its_own_position() {
        for (i, c) in LlmColumn::ALL.iter().enumerate() {
            assert_eq!(c.at(), i, "{c:?}");
            assert_eq!(format!("{c:?}"), c.name());
        }
        let list = select_list(Dialect::DuckDb);
        assert!(list.starts_with("epoch_ns(Timestamp), epoch_ns(ReceivedAt), Tenant, "), "{list}");
        assert!(list.ends_with("InvalidReason, epoch_ns(Hour), CacheWrite1hTokens"), "{list}");
    }
}
