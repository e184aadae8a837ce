use super::*;
use aitier_engine::{FlashAttn, KvType};

pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

pub(super) fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("aitier-cfg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[test]
fn file_then_flags_win_in_order() {
    let d = tempdir();
    let gguf = write(&d, "m.gguf", "x");
    let cfg = write(
        &d,
        "c.toml",
        &format!("[server]\nport = 9000\nhost = \"0.0.0.0\"\n[engine]\nslots = 2\nstep_tokens = 80\n[[models]]\nname = \"a\"\npath = \"{}\"\nctx_size = 1024\nstep_tokens = 30\n", gguf.display()),
    );
    let args = ServeArgs {
        config: Some(cfg),
        port: Some(9100),
        ..Default::default()
    };
    let c = ServeConfig::resolve(&args).expect("valid");
    assert_eq!(c.port, 9100);
    assert_eq!(c.host.to_string(), "0.0.0.0");
    assert_eq!(c.models[0].name, "a");
    let engine = c.models[0].engines().next().expect("local");
    assert_eq!(engine.slots, 2);
    assert_eq!(engine.ctx_per_slot, 1024);
    // The model's own setting wins over [engine].
    assert_eq!(engine.step_tokens, 30);
}

#[test]
fn the_console_is_on_unless_the_file_or_a_flag_turns_it_off() {
    let d = tempdir();
    let gguf = write(&d, "m.gguf", "x");
    let model = format!("[[models]]\nname = \"a\"\npath = \"{}\"\n", gguf.display());
    let on = write(&d, "on.toml", &model);
    let off = write(
        &d,
        "off.toml",
        &format!("[server]\nconsole = false\n{model}"),
    );
    let console = |config: &std::path::PathBuf, no_console| {
        let args = ServeArgs {
            config: Some(config.clone()),
            no_console,
            ..Default::default()
        };
        ServeConfig::resolve(&args).expect("valid").console
    };
    assert!(console(&on, false));
    assert!(!console(&off, false));
    assert!(!console(&on, true));
}

#[test]
fn drain_times_come_from_file_then_flags_and_must_be_ordered() {
    let d = tempdir();
    let gguf = write(&d, "m.gguf", "x");
    let cfg = write(
        &d,
        "c.toml",
        &format!("[server]\ndrain_grace = \"1500ms\"\ndrain_timeout = \"2m\"\n[[models]]\nname = \"a\"\npath = \"{}\"\n", gguf.display()),
    );
    let mut args = ServeArgs {
        config: Some(cfg.clone()),
        ..Default::default()
    };
    let c = ServeConfig::resolve(&args).expect("valid");
    assert_eq!(c.drain.grace, Duration::from_millis(1500));
    assert_eq!(c.drain.timeout, Duration::from_secs(120));
    args.drain_grace = Some(args::parse_duration("3").expect("seconds"));
    assert_eq!(
        ServeConfig::resolve(&args).expect("valid").drain.grace,
        Duration::from_secs(3)
    );
    args.drain_timeout = Some(Duration::from_secs(2));
    let err = ServeConfig::resolve(&args).expect_err("timeout before grace");
    assert!(err.to_string().contains("includes the grace"), "{err}");
    assert!(args::parse_duration("soon").is_err());
    let bad = write(&d, "bad.toml", "[server]\ndrain_grace = \"5 parsecs\"\n");
    let err = ServeConfig::resolve(&ServeArgs {
        config: Some(bad),
        ..Default::default()
    })
    .expect_err("bad duration");
    assert!(err.to_string().contains("drain_grace"), "{err}");
}

#[test]
fn unknown_keys_are_rejected() {
    let d = tempdir();
    let cfg = write(&d, "c.toml", "[server]\nprot = 1\n");
    let err = ServeConfig::resolve(&ServeArgs {
        config: Some(cfg),
        ..Default::default()
    })
    .expect_err("typo");
    assert!(err.to_string().contains("prot"), "{err}");
}

#[test]
fn bad_model_spec_and_missing_file_are_clear() {
    let args = ServeArgs {
        models: vec!["nopath".into()],
        ..Default::default()
    };
    assert!(matches!(
        ServeConfig::resolve(&args),
        Err(ConfigError::ModelSpec(_))
    ));
    let args = ServeArgs {
        models_dir: Some(tempdir()),
        ..Default::default()
    };
    let err = ServeConfig::resolve(&args).expect_err("missing");
    assert!(err.to_string().contains("make model"), "{err}");
}

#[test]
fn embedding_models_come_from_flags_files_and_defaults() {
    use aitier_engine::Task;
    let d = tempdir();
    let gguf = write(&d, "m.gguf", "x");
    let task = |m: &ModelConfig| m.engines().next().expect("local").task;
    let flags = ServeArgs {
        embedding_models: vec![format!("e={}", gguf.display())],
        ..Default::default()
    };
    let c = ServeConfig::resolve(&flags).expect("valid");
    assert_eq!(c.models.len(), 1);
    assert_eq!(task(&c.models[0]), Task::Embed { matryoshka: false });
    let cfg = write(
        &d,
        "c.toml",
        &format!("[[models]]\nname = \"e\"\nkind = \"embedding\"\nmatryoshka = true\npath = \"{0}\"\nslots = 8\n[[models]]\nname = \"c\"\npath = \"{0}\"\n[[models]]\nname = \"quiet\"\nkind = \"embedding\"\nbackground = false\npath = \"{0}\"\n", gguf.display()),
    );
    let c = ServeConfig::resolve(&ServeArgs {
        config: Some(cfg),
        ..Default::default()
    })
    .expect("valid");
    assert_eq!(task(&c.models[0]), Task::Embed { matryoshka: true });
    assert_eq!(c.models[0].engines().next().expect("local").slots, 8);
    assert_eq!(task(&c.models[1]), Task::Generate);
    let background = |i: usize| c.models[i].engines().next().expect("local").background;
    assert_eq!(
        (background(0), background(1), background(2)),
        (true, false, false)
    );
    let bad = write(
        &d,
        "bad.toml",
        &format!(
            "[[models]]\nname = \"c\"\nmatryoshka = true\npath = \"{}\"\n",
            gguf.display()
        ),
    );
    let err = ServeConfig::resolve(&ServeArgs {
        config: Some(bad),
        ..Default::default()
    })
    .expect_err("matryoshka on a chat model");
    assert!(err.to_string().contains("embedding"), "{err}");
    // The defaults: both models, the missing embedding file with its remedy.
    write(&d, DEFAULT_MODEL_FILE, "x");
    let err = ServeConfig::resolve(&ServeArgs {
        models_dir: Some(d.clone()),
        ..Default::default()
    })
    .expect_err("no embedding model file");
    assert!(err.to_string().contains("fetch-model.sh minilm"), "{err}");
    write(&d, DEFAULT_EMBEDDING_MODEL_FILE, "x");
    let c = ServeConfig::resolve(&ServeArgs {
        models_dir: Some(d),
        ..Default::default()
    })
    .expect("valid");
    let names: Vec<&str> = c.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, [DEFAULT_MODEL_NAME, DEFAULT_EMBEDDING_MODEL_NAME]);
}

#[test]
fn template_files_reach_the_named_models_engines() {
    let d = tempdir();
    let gguf = write(&d, "m.gguf", "x");
    let tmpl = write(&d, "t.jinja", "{{ messages }}");
    let cfg = write(
        &d,
        "c.toml",
        &format!("[[models]]\nname = \"a\"\npath = \"{}\"\nchat_template_file = \"{}\"\n[[models]]\nname = \"b\"\npath = \"{0}\"\n", gguf.display(), tmpl.display()),
    );
    let args = ServeArgs {
        config: Some(cfg.clone()),
        ..Default::default()
    };
    let c = ServeConfig::resolve(&args).expect("valid");
    let template = |i: usize| {
        c.models[i]
            .engines()
            .next()
            .expect("local")
            .chat_template_file
            .clone()
    };
    assert_eq!(template(0), Some(tmpl.clone()));
    assert_eq!(template(1), None);
    let flag = |spec: &str| ServeArgs {
        config: Some(cfg.clone()),
        chat_template_files: vec![spec.to_string()],
        ..Default::default()
    };
    let c = ServeConfig::resolve(&flag(&format!("b={}", tmpl.display()))).expect("valid");
    assert_eq!(
        c.models[1]
            .engines()
            .next()
            .expect("local")
            .chat_template_file,
        Some(tmpl.clone())
    );
    for bad in [
        "nobody=x".to_string(),
        "b".to_string(),
        format!("b={}", d.join("none").display()),
    ] {
        assert!(ServeConfig::resolve(&flag(&bad)).is_err(), "{bad}");
    }
}

#[test]
fn routing_balances_by_prefix_unless_told_otherwise() {
    use aitier_upstream::Balance;
    let routing = |text: &str| {
        toml::from_str::<routing::FileRouting>(text).map(|f| Routing::from_file(&f).balance)
    };
    assert_eq!(
        routing("").expect("empty"),
        Balance::Prefix { load_factor: 1.25 }
    );
    assert_eq!(
        routing("load_factor = 2.0").expect("factor"),
        Balance::Prefix { load_factor: 2.0 }
    );
    // Under 1 would leave no deployment room for the overflow.
    assert_eq!(
        routing("balance = \"prefix\"\nload_factor = 0.5").expect("low"),
        Balance::Prefix { load_factor: 1.0 }
    );
    assert_eq!(
        routing("balance = \"least-outstanding\"").expect("lor"),
        Balance::LeastOutstanding
    );
    let err = routing("balance = \"round-robin\"").expect_err("unknown");
    assert!(err.to_string().contains("least-outstanding"), "{err}");
}

#[test]
fn kv_cache_types_come_from_file_and_flags_and_bad_ones_are_named() {
    let d = tempdir();
    let gguf = write(&d, "m.gguf", "x");
    let cfg = write(
        &d,
        "c.toml",
        &format!("[engine]\ncache_type_k = \"q8_0\"\ncache_type_v = \"Q8_0\"\n[[models]]\nname = \"a\"\npath = \"{}\"\ncache_type_v = \"q4_0\"\n", gguf.display()),
    );
    let args = ServeArgs {
        config: Some(cfg.clone()),
        ..Default::default()
    };
    let c = ServeConfig::resolve(&args).expect("valid");
    let engine = c.models[0].engines().next().expect("local");
    assert_eq!(engine.cache_type_k, KvType::Q8_0);
    assert_eq!(engine.cache_type_v, KvType::Q4_0);
    let args = ServeArgs {
        config: Some(cfg),
        engine: EngineSettings {
            cache_type_k: Some(KvType::F32),
            ..Default::default()
        },
        ..Default::default()
    };
    let c = ServeConfig::resolve(&args).expect("valid");
    assert_eq!(
        c.models[0].engines().next().expect("local").cache_type_k,
        KvType::F32
    );
    assert_eq!(KvType::default(), KvType::F16);

    let bad = write(&d, "bad.toml", "[engine]\ncache_type_k = \"q9_9\"\n");
    let err = ServeConfig::resolve(&ServeArgs {
        config: Some(bad),
        ..Default::default()
    })
    .expect_err("unknown type");
    assert!(
        err.to_string().contains("q9_9") && err.to_string().contains("q8_0"),
        "{err}"
    );
}

#[test]
fn gpu_layers_without_a_gpu_build_is_refused_at_start() {
    let d = tempdir();
    let gguf = write(&d, "m.gguf", "x");
    let args = ServeArgs {
        models: vec![format!("a={}", gguf.display())],
        engine: EngineSettings {
            gpu_layers: Some(99),
            ..Default::default()
        },
        ..Default::default()
    };
    match ServeConfig::resolve(&args) {
        Err(e) if !aitier_engine::GPU_BUILD => {
            assert!(e.to_string().contains("--features cuda"), "{e}")
        }
        Ok(c) if aitier_engine::GPU_BUILD => {
            assert_eq!(c.models[0].engines().next().expect("local").gpu_layers, 99)
        }
        other => panic!("GPU build: {}: {:?}", aitier_engine::GPU_BUILD, other.err()),
    }
}

#[test]
fn flash_attention_comes_from_file_and_flags_and_refuses_what_llama_cpp_cannot_run() {
    let d = tempdir();
    let gguf = write(&d, "m.gguf", "x");
    let engine = |toml: &str, flag: Option<FlashAttn>| {
        let cfg = write(
            &d,
            "c.toml",
            &format!(
                "{toml}\n[[models]]\nname = \"a\"\npath = \"{}\"\n",
                gguf.display()
            ),
        );
        let args = ServeArgs {
            config: Some(cfg),
            engine: EngineSettings {
                flash_attn: flag,
                ..Default::default()
            },
            ..Default::default()
        };
        ServeConfig::resolve(&args).map(|c| c.models[0].engines().next().expect("local").clone())
    };
    // The default: llama.cpp's auto, but on outright for a quantised V.
    let e = engine("", None).expect("valid");
    assert_eq!(e.flash_attn, FlashAttn::Auto);
    assert_eq!(e.flash_attn_policy(), -1);
    let e = engine("[engine]\ncache_type_v = \"q8_0\"", None).expect("valid");
    assert_eq!(e.flash_attn_policy(), 1);
    // The file, then a flag over it.
    let e = engine("[engine]\nflash_attn = \"off\"", None).expect("valid");
    assert_eq!(e.flash_attn_policy(), 0);
    let e = engine("[engine]\nflash_attn = \"off\"", Some(FlashAttn::On)).expect("valid");
    assert_eq!(e.flash_attn_policy(), 1);
    // llama.cpp cannot run a quantised V cache without it.
    let err = engine(
        "[engine]\nflash_attn = \"off\"\ncache_type_v = \"q8_0\"",
        None,
    )
    .expect_err("quantised V without flash attention");
    assert!(err.to_string().contains("needs flash attention"), "{err}");
    let err = engine("[engine]\nflash_attn = \"sometimes\"", None).expect_err("unknown value");
    assert!(err.to_string().contains("sometimes"), "{err}");
    assert_eq!("OFF".parse::<FlashAttn>(), Ok(FlashAttn::Off));
}
