//! The columns every read of LLM calls selects from `costplane_usage_llm`,
//! in select order: one list for the SQL (`usage::llm_columns`), the JSON
//! cell reader (`usage::llm_row`) and the Arrow reader (`usage_arrow`), so
//! a column added or moved is one edit here, and each reader finds a value
//! by the column's name rather than by a number kept in step by hand.

use crate::Dialect;

/// Declares the columns once: the enum, its list in order, and each name
/// (the variant's own).
macro_rules! llm_columns {
    ($($column:ident),+ $(,)?) => {
        /// One selected column; its discriminant is its position in the select list.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum LlmColumn {
            $($column),+
        }

        impl LlmColumn {
            /// Every column, in select order.
            pub(crate) const ALL: &'static [LlmColumn] = &[$(LlmColumn::$column),+];

            /// The table's column name.
            pub(crate) const fn name(self) -> &'static str {
                match self {
                    $(LlmColumn::$column => stringify!($column)),+
                }
            }
        }
    };
}

llm_columns!(
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
);

impl LlmColumn {
    /// Its position in the select list (and in a read row).
    pub(crate) const fn at(self) -> usize {
        self as usize
    }

    /// Times, selected as ns since the epoch.
    const fn is_time(self) -> bool {
        matches!(self, LlmColumn::Timestamp | LlmColumn::ReceivedAt | LlmColumn::Hour)
    }
}

/// The select list, time columns as ns in `dialect`.
pub(crate) fn select_list(dialect: Dialect) -> String {
    LlmColumn::ALL.iter().map(|c| if c.is_time() { dialect.ns(c.name()) } else { c.name().to_owned() }).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The select list names each column once, in the order the readers
    /// index rows by (times as ns on each engine).
    #[test]
    fn the_select_list_is_the_columns_in_order() {
        let expected = |ns: &dyn Fn(&str) -> String| {
            format!(
                "{}, {}, Tenant, Project, Service, TraceId, SpanId, Provider, Model, Operation, InputTokens, OutputTokens, \
                 CacheReadTokens, CacheWriteTokens, ReasoningTokens, ProvidedCost, CallKind, InvalidReason, {}, CacheWrite1hTokens",
                ns("Timestamp"),
                ns("ReceivedAt"),
                ns("Hour")
            )
        };
        assert_eq!(select_list(Dialect::DuckDb), expected(&|c| format!("epoch_ns({c})")));
        assert_eq!(select_list(Dialect::ClickHouse), expected(&|c| format!("toUnixTimestamp64Nano({c})")));
        assert_eq!((LlmColumn::ReceivedAt.at(), LlmColumn::Hour.at()), (1, 18));
    }
}
