//! `berth build`'s front end: the Dockerfile parser, the shell-word lexer, the config evaluator,
//! `.dockerignore` and the build context with its cache keys. Pure code, no kernel: the executor
//! (containers for RUN, layers for COPY) lives with the agent.

pub mod context;
pub mod copy;
pub mod eval;
pub mod exec;
pub mod ignore;
pub mod parse;
pub mod shell;
