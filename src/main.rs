//! The `tandem` binary: command-line parsing and dispatch only.

use std::process::ExitCode;

use clap::Parser;
use tandem::{
    Application, Settings,
    cli::{Cli, Command},
    config, healthcheck, precompress, static_files, telemetry, tls,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = config::config_file_path(cli.config.as_deref());
    let settings = match Settings::load(file.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("tandem: {err}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Check => {
            println!("{}", settings.to_toml());
            if settings.static_files.mode == config::StaticMode::App {
                for warning in static_files::scan::check_warnings(&settings.static_files) {
                    eprintln!("tandem: warning: {warning}");
                }
            }
            match tls::certificate_report(&settings.tls) {
                Ok(report) => {
                    for line in report.lines {
                        eprintln!("tandem: {line}");
                    }
                    for warning in report.warnings {
                        eprintln!("tandem: warning: {warning}");
                    }
                }
                Err(err) => {
                    eprintln!("tandem: {err}");
                    return ExitCode::from(2);
                }
            }
            eprintln!(
                "tandem: configuration OK ({})",
                file.map_or("built-in defaults and environment".into(), |p| p
                    .display()
                    .to_string())
            );
            ExitCode::SUCCESS
        }
        Command::Healthcheck => match healthcheck::check(
            healthcheck::probe_address(&settings),
            settings.tls.mode != config::TlsMode::Off,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("tandem: healthcheck failed: {err}");
                ExitCode::from(1)
            }
        },
        Command::Precompress(args) => run_precompress(args, &settings),
    }
}

fn run_precompress(args: tandem::cli::PrecompressArgs, settings: &Settings) -> ExitCode {
    let roots = if args.dirs.is_empty() {
        vec![
            settings.static_files.htdocs.clone(),
            settings.static_files.public.clone(),
        ]
    } else {
        args.dirs
    };
    let options = precompress::Options {
        roots,
        encodings: settings.static_files.encodings.clone(),
        force: args.force,
        check: args.check,
        prune: args.prune,
    };
    match precompress::run(options) {
        Ok(report) => {
            for line in report.errors.iter().chain(&report.work) {
                eprintln!("tandem: {line}");
            }
            print!("{}", report.summary());
            ExitCode::from(report.exit_code())
        }
        Err(err) => {
            eprintln!("tandem: {err}");
            ExitCode::from(2)
        }
    }
}

fn serve(settings: Settings) -> ExitCode {
    telemetry::init(settings.log.format);
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).map_err(|err| (err.exit_code(), err.to_string()))?;
        app.run_until_stopped()
            .await
            .map_err(|err| (1, format!("the server failed: {err}")))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("tandem: {message}");
            ExitCode::from(code as u8)
        }
    }
}
