//! Training small tabular models inside the enclave with candle autograd: logistic regression and
//! multi-layer perceptrons (ReLU hidden layers, softmax over classes), minibatch SGD with
//! optional L2, reproducible for a fixed seed (initial weights and batch order come from a
//! seeded ChaCha generator, not from candle's unseeded CPU generator).
//!
//! A trained classifier exports to ONNX ([`Classifier::to_onnx`]) and is then served by the
//! worker's ONNX engine like any imported model: trained inside, served inside.
//!
//! The model owner fixes the input standardization (`input_mean`, `input_scale`) as part of the
//! model, so every participant of a federated round trains the same function of its raw rows.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::Optimizer as _;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize as _;

use super::EngineError;

/// The most parameters a trained model may have (a guard against a hostile spec).
pub const MAX_PARAMETERS: usize = 10_000_000;

/// One dense layer, `out × in` weights (row-major) and `out` biases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// Inputs.
    pub inputs: usize,
    /// Outputs.
    pub outputs: usize,
    /// `outputs × inputs`, row-major.
    pub weight: Vec<f32>,
    /// `outputs`.
    pub bias: Vec<f32>,
}

/// A feed-forward classifier: standardization, dense layers with ReLU between them, softmax.
/// One layer is logistic (softmax) regression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classifier {
    /// Subtracted from each input column.
    pub input_mean: Vec<f32>,
    /// Each centred input column is multiplied by this.
    pub input_scale: Vec<f32>,
    /// The layers, input first.
    pub layers: Vec<Dense>,
}

impl Drop for Classifier {
    fn drop(&mut self) {
        for layer in &mut self.layers {
            layer.weight.zeroize();
            layer.bias.zeroize();
        }
        self.input_mean.zeroize();
        self.input_scale.zeroize();
    }
}

/// Hyperparameters of one training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// Rows per minibatch.
    pub batch_size: usize,
    /// SGD step size.
    pub learning_rate: f64,
    /// L2 penalty on the weights (not the biases).
    #[serde(default)]
    pub l2: f64,
    /// Seeds the batch order (and, with DP-SGD, the Poisson sampling).
    pub seed: u64,
    /// Train with DP-SGD instead of plain SGD.
    #[serde(default)]
    pub dp: Option<DpSgd>,
}

/// DP-SGD (Abadi et al., 2016): each step samples every row with probability
/// `batch_size / rows`, clips each sampled row's gradient to `clip_norm` (L2 over all
/// parameters), sums, adds Gaussian noise of standard deviation `noise_multiplier · clip_norm`
/// to every coordinate and divides by the expected batch size. The privacy spent is
/// [`cloister_types::privacy::dp_sgd_epsilon`] of those parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpSgd {
    /// Per-example gradient norm bound.
    pub clip_norm: f64,
    /// Noise standard deviation over the clipping norm.
    pub noise_multiplier: f64,
    /// The δ the ε is stated for.
    pub delta: f64,
    /// Seeds the noise, for a reproducible run; without it the noise comes from the operating
    /// system's generator, which is what protects the rows (a party that knows the seed can
    /// subtract the noise).
    #[serde(default)]
    pub noise_seed: Option<u64>,
}

impl TrainConfig {
    /// The privacy this config spends on `rows` rows, as an RDP curve: `None` without DP-SGD.
    pub fn rdp(
        &self,
        rows: usize,
    ) -> Result<Option<cloister_types::privacy::RdpCurve>, EngineError> {
        let Some(dp) = &self.dp else { return Ok(None) };
        let q = (self.batch_size as f64 / rows.max(1) as f64).min(1.0);
        let steps =
            (self.epochs as u64).saturating_mul(rows.div_ceil(self.batch_size.max(1)) as u64);
        cloister_types::privacy::RdpCurve::dp_sgd(q, dp.noise_multiplier, steps)
            .map(Some)
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))
    }

    /// The privacy this config spends on `rows` rows, at the plan's δ: `None` without DP-SGD.
    pub fn privacy(
        &self,
        rows: usize,
    ) -> Result<Option<cloister_types::privacy::PrivacySpent>, EngineError> {
        let (Some(dp), Some(curve)) = (&self.dp, self.rdp(rows)?) else { return Ok(None) };
        curve.epsilon(dp.delta).map(Some).map_err(|e| EngineError::InvalidArgument(e.to_string()))
    }
}

/// Labelled rows: `rows × columns` features and a class index per row.
#[derive(Clone, Debug)]
pub struct LabelledRows {
    /// Row-major features.
    pub features: Vec<f32>,
    /// Class of each row, below the model's class count.
    pub labels: Vec<u32>,
    /// Feature columns.
    pub columns: usize,
}

impl Drop for LabelledRows {
    fn drop(&mut self) {
        self.features.zeroize();
        self.labels.zeroize();
    }
}

impl LabelledRows {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// Reads a CSV table whose last column is the class (a non-negative integer) and whose other
    /// columns are numbers; a first line that does not parse as numbers is a header and skipped.
    pub fn from_csv(bytes: &[u8]) -> Result<Self, EngineError> {
        let bad = |line: usize, why: &str| {
            EngineError::InvalidArgument(format!("line {line} of the training table {why}"))
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|_| EngineError::InvalidArgument("the training table is not UTF-8".into()))?;
        let (mut features, mut labels, mut columns) = (Vec::new(), Vec::new(), None);
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let parsed: Result<Vec<f32>, _> = cells.iter().map(|c| c.parse::<f32>()).collect();
            let Ok(values) = parsed else {
                if index == 0 {
                    continue;
                }
                return Err(bad(index + 1, "holds a value that is not a number"));
            };
            let Some((&label, row)) = values.split_last() else { continue };
            if row.is_empty() {
                return Err(bad(index + 1, "has no feature columns"));
            }
            if *columns.get_or_insert(row.len()) != row.len() {
                return Err(bad(index + 1, "has another number of columns than the first row"));
            }
            if !(label >= 0.0 && label.fract() == 0.0 && label < 65_536.0) {
                return Err(bad(index + 1, "has a class that is not a small non-negative integer"));
            }
            if row.iter().any(|v| !v.is_finite()) {
                return Err(bad(index + 1, "holds a value that is not finite"));
            }
            features.extend_from_slice(row);
            labels.push(label as u32);
        }
        let columns = columns
            .ok_or_else(|| EngineError::InvalidArgument("the training table has no rows".into()))?;
        Ok(LabelledRows { features, labels, columns })
    }
}

/// What a run measured on its training rows after the last epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainMetrics {
    /// Rows trained on.
    pub rows: usize,
    /// Minibatch steps taken.
    pub steps: usize,
    /// The (ε, δ) spent, with DP-SGD.
    #[serde(default)]
    pub privacy: Option<(f64, f64)>,
    /// Mean cross-entropy on the training rows, after training.
    pub loss: f64,
    /// Fraction of training rows classified right, after training.
    pub accuracy: f64,
}

impl Classifier {
    /// A new classifier with `hidden` ReLU layers (none: logistic regression), weights drawn
    /// uniformly in ±1/√inputs (as PyTorch's default) from `seed`, zero biases.
    pub fn initial(
        input_mean: Vec<f32>,
        input_scale: Vec<f32>,
        hidden: &[usize],
        classes: usize,
        seed: u64,
    ) -> Result<Self, EngineError> {
        let inputs = input_mean.len();
        if inputs == 0 || input_scale.len() != inputs {
            return Err(EngineError::InvalidArgument(
                "the input standardization needs one mean and one scale per column".into(),
            ));
        }
        if classes < 2 || hidden.contains(&0) {
            return Err(EngineError::InvalidArgument(
                "a classifier needs at least two classes and non-empty hidden layers".into(),
            ));
        }
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut layers = Vec::new();
        let mut width = inputs;
        for &outputs in hidden.iter().chain(std::iter::once(&classes)) {
            let bound = 1.0 / (width as f32).sqrt();
            let weight = (0..outputs * width).map(|_| rng.random_range(-bound..bound)).collect();
            layers.push(Dense { inputs: width, outputs, weight, bias: vec![0.0; outputs] });
            width = outputs;
        }
        let model = Classifier { input_mean, input_scale, layers };
        model.check()?;
        Ok(model)
    }

    /// Input columns.
    pub fn inputs(&self) -> usize {
        self.input_mean.len()
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// Checks that the layers chain, every length matches and every value is finite.
    pub fn check(&self) -> Result<(), EngineError> {
        let bad = |why: String| EngineError::InvalidArgument(format!("the classifier {why}"));
        if self.input_mean.len() != self.input_scale.len() || self.input_mean.is_empty() {
            return Err(bad("needs one mean and one scale per input column".into()));
        }
        if self.layers.is_empty() {
            return Err(bad("has no layers".into()));
        }
        let mut width = self.inputs();
        let mut parameters = 0usize;
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.inputs != width || layer.outputs == 0 {
                return Err(bad(format!("layer {i} takes {} inputs, not {width}", layer.inputs)));
            }
            let size = layer.inputs.saturating_mul(layer.outputs);
            if layer.weight.len() != size || layer.bias.len() != layer.outputs {
                return Err(bad(format!("layer {i} has weights or biases of the wrong length")));
            }
            parameters = parameters.saturating_add(size + layer.outputs);
            width = layer.outputs;
        }
        if parameters > MAX_PARAMETERS {
            return Err(bad(format!("has more than {MAX_PARAMETERS} parameters")));
        }
        if width < 2 {
            return Err(bad("must output at least two classes".into()));
        }
        let values = self.layers.iter().flat_map(|l| l.weight.iter().chain(&l.bias));
        if values.chain(&self.input_mean).chain(&self.input_scale).any(|v| !v.is_finite()) {
            return Err(bad("holds a value that is not finite".into()));
        }
        Ok(())
    }

    fn check_rows(&self, rows: &LabelledRows) -> Result<(), EngineError> {
        if rows.columns != self.inputs() {
            return Err(EngineError::InvalidArgument(format!(
                "the data has {} feature columns, the model takes {}",
                rows.columns,
                self.inputs()
            )));
        }
        if rows.rows() == 0 {
            return Err(EngineError::InvalidArgument("the data has no rows".into()));
        }
        if let Some(label) = rows.labels.iter().find(|&&l| l as usize >= self.classes()) {
            return Err(EngineError::InvalidArgument(format!(
                "the data has class {label}, the model has {} classes",
                self.classes()
            )));
        }
        Ok(())
    }

    /// Class probabilities of each row (`rows × classes`, row-major).
    pub fn predict(&self, features: &[f32]) -> Result<Vec<f32>, EngineError> {
        self.check()?;
        if !features.len().is_multiple_of(self.inputs()) {
            return Err(EngineError::InvalidArgument(format!(
                "{} values do not make whole rows of {} columns",
                features.len(),
                self.inputs()
            )));
        }
        let vars = self.to_vars()?;
        let x = self.standardized(features)?;
        let probabilities = candle_nn::ops::softmax(&forward(&vars, &x)?, D::Minus1)
            .and_then(|p| p.flatten_all()?.to_vec1::<f32>())
            .map_err(inference)?;
        Ok(probabilities)
    }

    /// Mean cross-entropy and accuracy on `rows`.
    pub fn evaluate(&self, rows: &LabelledRows) -> Result<(f64, f64), EngineError> {
        self.check()?;
        self.check_rows(rows)?;
        let vars = self.to_vars()?;
        let x = self.standardized(&rows.features)?;
        let y = Tensor::new(rows.labels.as_slice(), &Device::Cpu).map_err(inference)?;
        let logits = forward(&vars, &x)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)
            .and_then(|l| l.to_scalar::<f32>())
            .map_err(inference)?;
        let predicted =
            logits.argmax(D::Minus1).and_then(|p| p.to_vec1::<u32>()).map_err(inference)?;
        let right = predicted.iter().zip(&rows.labels).filter(|(p, l)| p == l).count();
        Ok((f64::from(loss), right as f64 / rows.rows() as f64))
    }

    /// Trains a copy of this classifier on `rows` with minibatch SGD and returns it with its
    /// metrics. The same classifier, rows and config give the same result.
    pub fn train(
        &self,
        rows: &LabelledRows,
        config: &TrainConfig,
    ) -> Result<(Classifier, TrainMetrics), EngineError> {
        self.check()?;
        self.check_rows(rows)?;
        if config.epochs == 0 || config.batch_size == 0 {
            return Err(EngineError::InvalidArgument(
                "epochs and batch_size must be at least 1".into(),
            ));
        }
        let positive = config.learning_rate.is_finite() && config.learning_rate > 0.0;
        if !positive || !config.l2.is_finite() || config.l2 < 0.0 {
            return Err(EngineError::InvalidArgument(
                "learning_rate must be positive and l2 non-negative".into(),
            ));
        }
        let privacy = config.privacy(rows.rows())?;
        let vars = self.to_vars()?;
        let x = self.standardized(&rows.features)?;
        let y = Tensor::new(rows.labels.as_slice(), &Device::Cpu).map_err(inference)?;
        if let Some(dp) = &config.dp {
            if !(dp.clip_norm.is_finite() && dp.clip_norm > 0.0) {
                return Err(EngineError::InvalidArgument("clip_norm must be positive".into()));
            }
            let steps = dp_sgd(&vars, &x, &y, config, dp)?;
            let trained = self.with_vars(&vars)?;
            let (loss, accuracy) = trained.evaluate(rows)?;
            let privacy = privacy.map(|p| (p.epsilon, p.delta));
            return Ok((
                trained,
                TrainMetrics { rows: rows.rows(), steps, privacy, loss, accuracy },
            ));
        }
        let mut sgd = candle_nn::SGD::new(
            vars.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect(),
            config.learning_rate,
        )
        .map_err(inference)?;
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let mut order: Vec<u32> = (0..rows.rows() as u32).collect();
        let mut steps = 0;
        for _ in 0..config.epochs {
            order.shuffle(&mut rng);
            for batch in order.chunks(config.batch_size) {
                let index = Tensor::new(batch, &Device::Cpu).map_err(inference)?;
                let xb = x.index_select(&index, 0).map_err(inference)?;
                let yb = y.index_select(&index, 0).map_err(inference)?;
                let mut loss = candle_nn::loss::cross_entropy(&forward(&vars, &xb)?, &yb)
                    .map_err(inference)?;
                if config.l2 > 0.0 {
                    for (w, _) in &vars {
                        let penalty = w.sqr().and_then(|s| s.sum_all()).map_err(inference)?;
                        loss = (loss + (penalty * (config.l2 / 2.0)).map_err(inference)?)
                            .map_err(inference)?;
                    }
                }
                sgd.backward_step(&loss).map_err(inference)?;
                steps += 1;
            }
        }
        let trained = self.with_vars(&vars)?;
        let (loss, accuracy) = trained.evaluate(rows)?;
        Ok((trained, TrainMetrics { rows: rows.rows(), steps, privacy: None, loss, accuracy }))
    }

    fn standardized(&self, features: &[f32]) -> Result<Tensor, EngineError> {
        let columns = self.inputs();
        let rows = features.len() / columns;
        let x = Tensor::from_slice(features, (rows, columns), &Device::Cpu).map_err(inference)?;
        let mean = Tensor::from_slice(&self.input_mean, (1, columns), &Device::Cpu);
        let scale = Tensor::from_slice(&self.input_scale, (1, columns), &Device::Cpu);
        mean.and_then(|m| x.broadcast_sub(&m))
            .and_then(|c| c.broadcast_mul(&scale?))
            .map_err(inference)
    }

    fn to_vars(&self) -> Result<Vec<(Var, Var)>, EngineError> {
        self.layers
            .iter()
            .map(|l| {
                let w = Tensor::from_slice(&l.weight, (l.outputs, l.inputs), &Device::Cpu)?;
                let b = Tensor::from_slice(&l.bias, l.outputs, &Device::Cpu)?;
                Ok((Var::from_tensor(&w)?, Var::from_tensor(&b)?))
            })
            .collect::<candle_core::Result<_>>()
            .map_err(inference)
    }

    fn with_vars(&self, vars: &[(Var, Var)]) -> Result<Classifier, EngineError> {
        let layers = self
            .layers
            .iter()
            .zip(vars)
            .map(|(l, (w, b))| {
                Ok(Dense {
                    inputs: l.inputs,
                    outputs: l.outputs,
                    weight: w.as_tensor().flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
                    bias: b.as_tensor().to_vec1()?,
                })
            })
            .collect::<candle_core::Result<_>>()
            .map_err(inference)?;
        let trained = Classifier {
            input_mean: self.input_mean.clone(),
            input_scale: self.input_scale.clone(),
            layers,
        };
        trained.check()?;
        Ok(trained)
    }
}

/// Federated averaging (McMahan et al., 2017): the parameters of `updates`, each weighted by the
/// rows it was trained on. Every update must have the same architecture and standardization.
pub fn federated_average(updates: &[(&Classifier, u64)]) -> Result<Classifier, EngineError> {
    let bad = |why: &str| Err(EngineError::InvalidArgument(format!("federated averaging: {why}")));
    let Some(((first, _), rest)) = updates.split_first() else {
        return bad("no updates");
    };
    let total: u64 = updates.iter().map(|(_, rows)| rows).sum();
    if updates.iter().any(|(_, rows)| *rows == 0) {
        return bad("an update was trained on no rows");
    }
    first.check()?;
    for (other, _) in rest {
        other.check()?;
        let same_shape = other.layers.len() == first.layers.len()
            && other
                .layers
                .iter()
                .zip(&first.layers)
                .all(|(a, b)| (a.inputs, a.outputs) == (b.inputs, b.outputs));
        if !same_shape {
            return bad("the updates have different architectures");
        }
        if other.input_mean != first.input_mean || other.input_scale != first.input_scale {
            return bad("the updates have different input standardizations");
        }
    }
    let mut average = (*first).clone();
    for (l, layer) in average.layers.iter_mut().enumerate() {
        let mut weight = vec![0f64; layer.weight.len()];
        let mut bias = vec![0f64; layer.bias.len()];
        for (update, rows) in updates {
            let share = *rows as f64 / total as f64;
            for (sum, v) in weight.iter_mut().zip(&update.layers[l].weight) {
                *sum += share * f64::from(*v);
            }
            for (sum, v) in bias.iter_mut().zip(&update.layers[l].bias) {
                *sum += share * f64::from(*v);
            }
        }
        layer.weight = weight.into_iter().map(|v| v as f32).collect();
        layer.bias = bias.into_iter().map(|v| v as f32).collect();
    }
    Ok(average)
}

impl Classifier {
    /// The classifier as an ONNX model (opset 13): input `features` `[N, inputs]` float, output
    /// `probabilities` `[N, classes]`; `Sub`/`Mul` standardization, `Gemm` layers with `Relu`
    /// between them, `Softmax`. The worker's ONNX engine serves it like any imported model.
    pub fn to_onnx(&self) -> Result<Vec<u8>, EngineError> {
        use prost::Message as _;
        use tract_onnx::pb;

        self.check()?;
        let float = pb::tensor_proto::DataType::Float as i32;
        let constant = |name: &str, dims: Vec<i64>, values: &[f32]| pb::TensorProto {
            name: name.to_owned(),
            dims,
            data_type: float,
            float_data: values.to_vec(),
            ..Default::default()
        };
        let node = |op: &str, inputs: &[&str], output: &str, attribute| pb::NodeProto {
            op_type: op.to_owned(),
            name: output.to_owned(),
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.to_owned()],
            attribute,
            ..Default::default()
        };
        let int_attribute = |name: &str, value: i64| pb::AttributeProto {
            name: name.to_owned(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: value,
            ..Default::default()
        };
        let tensor_value = |name: &str, width: usize| {
            use pb::tensor_shape_proto::{Dimension, dimension::Value};
            let dim = |value| Dimension { value: Some(value), ..Default::default() };
            pb::ValueInfoProto {
                name: name.to_owned(),
                r#type: Some(pb::TypeProto {
                    value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                        elem_type: float,
                        shape: Some(pb::TensorShapeProto {
                            dim: vec![
                                dim(Value::DimParam("N".into())),
                                dim(Value::DimValue(width as i64)),
                            ],
                        }),
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let columns = self.inputs() as i64;
        let mut initializer = vec![
            constant("input_mean", vec![1, columns], &self.input_mean),
            constant("input_scale", vec![1, columns], &self.input_scale),
        ];
        let mut nodes = vec![
            node("Sub", &["features", "input_mean"], "centred", vec![]),
            node("Mul", &["centred", "input_scale"], "h0", vec![]),
        ];
        let mut current = "h0".to_owned();
        for (i, layer) in self.layers.iter().enumerate() {
            let (w, b) = (format!("layer{i}_weight"), format!("layer{i}_bias"));
            initializer.push(constant(
                &w,
                vec![layer.outputs as i64, layer.inputs as i64],
                &layer.weight,
            ));
            initializer.push(constant(&b, vec![layer.outputs as i64], &layer.bias));
            let output = format!("dense{i}");
            nodes.push(node(
                "Gemm",
                &[&current, &w, &b],
                &output,
                vec![int_attribute("transB", 1)],
            ));
            current = output;
            if i + 1 < self.layers.len() {
                let output = format!("relu{i}");
                nodes.push(node("Relu", &[&current], &output, vec![]));
                current = output;
            }
        }
        nodes.push(node("Softmax", &[&current], "probabilities", vec![int_attribute("axis", 1)]));
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 13 }],
            producer_name: "cloister".to_owned(),
            graph: Some(pb::GraphProto {
                name: "classifier".to_owned(),
                node: nodes,
                initializer,
                input: vec![tensor_value("features", self.inputs())],
                output: vec![tensor_value("probabilities", self.classes())],
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(model.encode_to_vec())
    }
}

/// DP-SGD steps on `vars` (see [`DpSgd`]); returns the number of steps.
fn dp_sgd(
    vars: &[(Var, Var)],
    x: &Tensor,
    y: &Tensor,
    config: &TrainConfig,
    dp: &DpSgd,
) -> Result<usize, EngineError> {
    use rand_distr::Distribution as _;

    let rows = y.dims1().map_err(inference)?;
    let q = (config.batch_size as f64 / rows as f64).min(1.0);
    let steps_per_epoch = rows.div_ceil(config.batch_size);
    let expected_batch = q * rows as f64;
    let mut sampler = ChaCha20Rng::seed_from_u64(config.seed);
    let mut noise_rng = match dp.noise_seed {
        Some(seed) => ChaCha20Rng::seed_from_u64(seed),
        None => ChaCha20Rng::from_os_rng(),
    };
    let normal = rand_distr::Normal::new(0.0, dp.noise_multiplier * dp.clip_norm)
        .map_err(|e| EngineError::InvalidArgument(format!("the DP noise: {e}")))?;
    let params: Vec<&Var> = vars.iter().flat_map(|(w, b)| [w, b]).collect();
    let sizes: Vec<usize> = params.iter().map(|v| v.as_tensor().elem_count()).collect();
    let mut steps = 0;
    for _ in 0..config.epochs * steps_per_epoch {
        let mut sum: Vec<Vec<f64>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
        for row in 0..rows {
            if !sampler.random_bool(q) {
                continue;
            }
            let index = Tensor::new(&[row as u32], &Device::Cpu).map_err(inference)?;
            let (xr, yr) = (
                x.index_select(&index, 0).map_err(inference)?,
                y.index_select(&index, 0).map_err(inference)?,
            );
            let loss =
                candle_nn::loss::cross_entropy(&forward(vars, &xr)?, &yr).map_err(inference)?;
            let grads = loss.backward().map_err(inference)?;
            let mut per_example = Vec::with_capacity(params.len());
            for var in &params {
                let grad = match grads.get(var.as_tensor()) {
                    Some(g) => {
                        g.flatten_all().and_then(|g| g.to_vec1::<f32>()).map_err(inference)?
                    }
                    None => vec![0.0; var.as_tensor().elem_count()],
                };
                per_example.push(grad);
            }
            let norm =
                per_example.iter().flatten().map(|g| f64::from(*g).powi(2)).sum::<f64>().sqrt();
            let factor = (dp.clip_norm / norm.max(f64::MIN_POSITIVE)).min(1.0);
            for (total, grad) in sum.iter_mut().zip(&mut per_example) {
                for (t, g) in total.iter_mut().zip(grad.iter()) {
                    *t += f64::from(*g) * factor;
                }
                grad.zeroize();
            }
        }
        for (var, total) in params.iter().zip(&mut sum) {
            let step: Vec<f32> = total
                .iter()
                .map(|t| {
                    ((t + normal.sample(&mut noise_rng)) / expected_batch * config.learning_rate)
                        as f32
                })
                .collect();
            total.zeroize();
            let step =
                Tensor::from_vec(step, var.as_tensor().shape(), &Device::Cpu).map_err(inference)?;
            let updated = var.as_tensor().sub(&step).map_err(inference)?;
            var.set(&updated).map_err(inference)?;
        }
        steps += 1;
    }
    Ok(steps)
}

/// Logits: dense layers with ReLU between them.
fn forward(vars: &[(Var, Var)], x: &Tensor) -> Result<Tensor, EngineError> {
    let mut h = x.clone();
    for (i, (w, b)) in vars.iter().enumerate() {
        h = h.matmul(&w.as_tensor().t().map_err(inference)?).map_err(inference)?;
        h = h.broadcast_add(b.as_tensor()).map_err(inference)?;
        if i + 1 < vars.len() {
            h = h.relu().map_err(inference)?;
        }
    }
    Ok(h)
}

fn inference(e: candle_core::Error) -> EngineError {
    EngineError::Inference(e.to_string())
}

/// Column means and the inverse of the column standard deviations (1 for a constant column), as
/// a model owner computes its standardization from data it holds.
pub fn standardization(rows: &LabelledRows) -> (Vec<f32>, Vec<f32>) {
    let (n, columns) = (rows.rows().max(1) as f64, rows.columns);
    let mut mean = vec![0f64; columns];
    for row in rows.features.chunks(columns) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v) / n;
        }
    }
    let mut variance = vec![0f64; columns];
    for row in rows.features.chunks(columns) {
        for ((s, m), v) in variance.iter_mut().zip(&mean).zip(row) {
            *s += (f64::from(*v) - m).powi(2) / n;
        }
    }
    let scale =
        variance.iter().map(|v| if *v > 0.0 { (1.0 / v.sqrt()) as f32 } else { 1.0 }).collect();
    (mean.iter().map(|m| *m as f32).collect(), scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[u8] = include_bytes!("../../../assets/breast_cancer.csv");

    fn split() -> (LabelledRows, LabelledRows) {
        let all = LabelledRows::from_csv(TABLE).unwrap();
        let (mut train, mut test) = (Vec::new(), Vec::new());
        let (mut train_y, mut test_y) = (Vec::new(), Vec::new());
        for (i, (row, y)) in all.features.chunks(all.columns).zip(&all.labels).enumerate() {
            if i % 5 == 0 {
                test.extend_from_slice(row);
                test_y.push(*y);
            } else {
                train.extend_from_slice(row);
                train_y.push(*y);
            }
        }
        (
            LabelledRows { features: train, labels: train_y, columns: all.columns },
            LabelledRows { features: test, labels: test_y, columns: all.columns },
        )
    }

    fn config(seed: u64) -> TrainConfig {
        TrainConfig { epochs: 20, batch_size: 32, learning_rate: 0.1, l2: 0.0, seed, dp: None }
    }

    #[test]
    fn the_table_reads_with_its_header_skipped() {
        let all = LabelledRows::from_csv(TABLE).unwrap();
        // The header line "569,30,malignant,benign" does not parse as numbers.
        assert_eq!((all.rows(), all.columns), (569, 30));
        assert_eq!(all.labels.iter().filter(|&&l| l == 1).count(), 357);
    }

    #[test]
    fn logistic_regression_and_an_mlp_learn_the_breast_cancer_table() {
        let (train, test) = split();
        let (mean, scale) = standardization(&train);
        for hidden in [&[][..], &[16][..]] {
            let model = Classifier::initial(mean.clone(), scale.clone(), hidden, 2, 7).unwrap();
            let (_, before) = model.evaluate(&test).unwrap();
            let (trained, metrics) = model.train(&train, &config(1)).unwrap();
            let (_, accuracy) = trained.evaluate(&test).unwrap();
            assert!(accuracy > 0.94, "{hidden:?}: held-out accuracy {accuracy}");
            assert!(accuracy > before, "{hidden:?}: {before} → {accuracy}");
            assert!(metrics.accuracy > 0.95, "{hidden:?}: {metrics:?}");
            assert_eq!(metrics.steps, 20 * train.rows().div_ceil(32));
            let probabilities = trained.predict(&test.features[..60]).unwrap();
            assert_eq!(probabilities.len(), 4);
            for pair in probabilities.chunks(2) {
                assert!((pair[0] + pair[1] - 1.0).abs() < 1e-5, "{pair:?}");
            }
        }
    }

    #[test]
    fn training_is_reproducible_for_a_seed_and_differs_across_seeds() {
        let (train, _) = split();
        let (mean, scale) = standardization(&train);
        let model = Classifier::initial(mean.clone(), scale.clone(), &[8], 2, 3).unwrap();
        let (a, _) = model.train(&train, &config(5)).unwrap();
        let (b, _) = model.train(&train, &config(5)).unwrap();
        let (c, _) = model.train(&train, &config(6)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(model, Classifier::initial(mean.clone(), scale.clone(), &[8], 2, 3).unwrap());
        assert_ne!(model, Classifier::initial(mean, scale, &[8], 2, 4).unwrap());
    }

    #[test]
    fn an_exported_model_gives_the_same_probabilities_in_the_onnx_engine() {
        let (train, test) = split();
        let (mean, scale) = standardization(&train);
        for hidden in [&[][..], &[16, 8][..]] {
            let model = Classifier::initial(mean.clone(), scale.clone(), hidden, 2, 11).unwrap();
            let (trained, _) = model.train(&train, &config(2)).unwrap();
            let onnx = crate::OnnxModel::load(&trained.to_onnx().unwrap()).unwrap();
            assert_eq!(onnx.input().name, "features");
            let rows = test.rows();
            let outputs = onnx.infer(&[rows, 30], &test.features).unwrap();
            let probabilities = outputs.iter().find(|t| t.name == "probabilities").unwrap();
            assert_eq!(probabilities.shape, [rows, 2]);
            let expected = trained.predict(&test.features).unwrap();
            for (a, b) in probabilities.data.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-5, "{hidden:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn dp_sgd_learns_spends_what_the_accountant_says_and_reproduces_with_a_noise_seed() {
        let (train, test) = split();
        let (mean, scale) = standardization(&train);
        let model = Classifier::initial(mean, scale, &[], 2, 1).unwrap();
        let dp = DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, delta: 1e-5, noise_seed: Some(9) };
        let dp_config = TrainConfig {
            epochs: 5,
            batch_size: 64,
            learning_rate: 0.5,
            dp: Some(dp.clone()),
            ..config(3)
        };
        let (trained, metrics) = model.train(&train, &dp_config).unwrap();
        let (_, accuracy) = trained.evaluate(&test).unwrap();
        assert!(accuracy > 0.9, "held-out accuracy with DP-SGD {accuracy}");
        let expected = cloister_types::privacy::dp_sgd_epsilon(
            64.0 / train.rows() as f64,
            1.0,
            5 * train.rows().div_ceil(64) as u64,
            1e-5,
        )
        .unwrap();
        assert_eq!(metrics.privacy, Some((expected.epsilon, 1e-5)));
        assert_eq!(metrics.steps, 5 * train.rows().div_ceil(64));
        // The same seeds give the same model; another noise seed another one.
        let (again, _) = model.train(&train, &dp_config).unwrap();
        assert_eq!(trained, again);
        let other = TrainConfig { dp: Some(DpSgd { noise_seed: Some(10), ..dp }), ..dp_config };
        let (different, _) = model.train(&train, &other).unwrap();
        assert_ne!(trained, different);
    }

    #[test]
    fn dp_sgd_clips_each_rows_influence() {
        // One step over every row (sampling rate 1) with a tiny clip norm and negligible noise:
        // the mean of gradients each clipped to 1e-3 has norm at most 1e-3, and so has the step.
        let (train, _) = split();
        let (mean, scale) = standardization(&train);
        let model = Classifier::initial(mean, scale, &[], 2, 1).unwrap();
        let tiny =
            DpSgd { clip_norm: 1e-3, noise_multiplier: 1e-6, delta: 1e-5, noise_seed: Some(1) };
        let one_step = TrainConfig {
            epochs: 1,
            batch_size: train.rows(),
            learning_rate: 1.0,
            dp: Some(tiny),
            ..config(0)
        };
        let (moved, metrics) = model.train(&train, &one_step).unwrap();
        assert_eq!(metrics.steps, 1);
        let distance: f64 = moved
            .layers
            .iter()
            .zip(&model.layers)
            .flat_map(|(a, b)| a.weight.iter().chain(&a.bias).zip(b.weight.iter().chain(&b.bias)))
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        // Every row's gradient is clipped to 1e-3, so their mean has norm ≤ 1e-3.
        assert!(distance <= 1.0e-3 * 1.001, "moved {distance}");
        assert!(distance > 0.0);
        let zero = TrainConfig {
            dp: Some(DpSgd {
                clip_norm: 0.0,
                noise_multiplier: 1.0,
                delta: 1e-5,
                noise_seed: None,
            }),
            ..config(0)
        };
        assert!(model.train(&train, &zero).unwrap_err().to_string().contains("clip_norm"));
    }

    #[test]
    fn federated_averaging_weights_by_rows_and_refuses_mismatches() {
        let (train, _) = split();
        let (mean, scale) = standardization(&train);
        let a = Classifier::initial(mean.clone(), scale.clone(), &[4], 2, 1).unwrap();
        let b = Classifier::initial(mean.clone(), scale.clone(), &[4], 2, 2).unwrap();
        let average = federated_average(&[(&a, 1), (&b, 3)]).unwrap();
        for ((x, y), z) in
            a.layers[0].weight.iter().zip(&b.layers[0].weight).zip(&average.layers[0].weight)
        {
            assert!((0.25 * x + 0.75 * y - z).abs() < 1e-6);
        }
        assert_eq!(federated_average(&[(&a, 5)]).unwrap(), a);
        let other_shape = Classifier::initial(mean.clone(), scale.clone(), &[5], 2, 1).unwrap();
        let other_scale = Classifier::initial(mean, vec![1.0; 30], &[4], 2, 1).unwrap();
        for (updates, expect) in [
            (vec![], "no updates"),
            (vec![(&a, 0)], "no rows"),
            (vec![(&a, 1), (&other_shape, 1)], "architectures"),
            (vec![(&a, 1), (&other_scale, 1)], "standardizations"),
        ] {
            let err = federated_average(&updates).unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        }
    }

    #[test]
    fn five_federated_rounds_over_three_sites_come_within_two_points_of_central_training() {
        let (train, test) = split();
        let (mean, scale) = standardization(&train);
        let initial = Classifier::initial(mean, scale, &[], 2, 1).unwrap();
        // Three disjoint sites, of unequal sizes.
        let rows = train.rows();
        let bounds = [0, rows / 5, rows / 2, rows];
        let sites: Vec<LabelledRows> = bounds
            .windows(2)
            .map(|w| LabelledRows {
                features: train.features[w[0] * 30..w[1] * 30].to_vec(),
                labels: train.labels[w[0]..w[1]].to_vec(),
                columns: 30,
            })
            .collect();
        let local = TrainConfig { epochs: 2, ..config(4) };
        let mut global = initial.clone();
        for round in 0..5u64 {
            let updates: Vec<(Classifier, u64)> = sites
                .iter()
                .map(|site| {
                    let config = TrainConfig { seed: round, ..local.clone() };
                    (global.train(site, &config).unwrap().0, site.rows() as u64)
                })
                .collect();
            let refs: Vec<(&Classifier, u64)> = updates.iter().map(|(c, n)| (c, *n)).collect();
            global = federated_average(&refs).unwrap();
        }
        let (_, federated) = global.evaluate(&test).unwrap();
        let (central_model, _) =
            initial.train(&train, &TrainConfig { epochs: 10, ..config(4) }).unwrap();
        let (_, central) = central_model.evaluate(&test).unwrap();
        assert!(federated > 0.93, "federated {federated}");
        assert!((federated - central).abs() <= 0.02, "federated {federated}, central {central}");
    }

    #[test]
    fn bad_models_data_and_settings_are_refused() {
        let (train, _) = split();
        let (mean, scale) = standardization(&train);
        let model = Classifier::initial(mean.clone(), scale.clone(), &[], 2, 0).unwrap();
        let refused = |result: Result<(Classifier, TrainMetrics), EngineError>, expect: &str| {
            let err = result.err().unwrap().to_string();
            assert!(err.contains(expect), "{err}");
        };
        refused(model.train(&train, &TrainConfig { epochs: 0, ..config(0) }), "epochs");
        refused(
            model.train(&train, &TrainConfig { learning_rate: -1.0, ..config(0) }),
            "learning_rate",
        );
        refused(model.train(&train, &TrainConfig { l2: f64::NAN, ..config(0) }), "l2");
        let narrow = LabelledRows { features: vec![1.0; 29], labels: vec![0], columns: 29 };
        refused(model.train(&narrow, &config(0)), "29 feature columns");
        let classes = LabelledRows { features: vec![1.0; 30], labels: vec![2], columns: 30 };
        refused(model.train(&classes, &config(0)), "class 2");
        let mut broken = model.clone();
        broken.layers[0].bias.pop();
        refused(broken.train(&train, &config(0)), "wrong length");
        let mut infinite = model.clone();
        infinite.layers[0].weight[0] = f32::INFINITY;
        refused(infinite.train(&train, &config(0)), "not finite");
        assert!(Classifier::initial(mean.clone(), scale.clone(), &[], 1, 0).is_err());
        assert!(Classifier::initial(mean, vec![1.0], &[], 2, 0).is_err());
        for (csv, expect) in [
            (&b"1,2,0\n1,x,1\n"[..], "line 2"),
            (b"1,2,0\n1,2,3,1\n", "another number of columns"),
            (b"1,2,0.5\n", "class"),
            (b"1,inf,0\n", "not finite"),
            (b"a,b\n", "no rows"),
        ] {
            let err = LabelledRows::from_csv(csv).err().unwrap().to_string();
            assert!(err.contains(expect), "{err}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// A data owner's bytes never panic the parser; they parse or are refused with a reason.
        #[test]
        fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Err(error) = LabelledRows::from_csv(&bytes) {
                proptest::prop_assert!(error.to_string().contains("training table"));
            }
        }

        /// A table written as CSV (shortest round-trip floats) reads back exactly.
        #[test]
        fn written_tables_read_back_exactly(
            columns in 1usize..6,
            cells in proptest::collection::vec((-1e6f32..1e6, 0u32..5), 1..40),
        ) {
            let mut text = String::new();
            let (mut features, mut labels) = (Vec::new(), Vec::new());
            for (i, (value, label)) in cells.iter().enumerate() {
                let row: Vec<f32> = (0..columns).map(|c| value * (c as f32 + 1.0) - i as f32).collect();
                for v in &row {
                    text.push_str(&format!("{v},"));
                }
                text.push_str(&format!("{label}\n"));
                features.extend_from_slice(&row);
                labels.push(*label);
            }
            let parsed = LabelledRows::from_csv(text.as_bytes()).unwrap();
            proptest::prop_assert_eq!(parsed.columns, columns);
            proptest::prop_assert_eq!(&parsed.labels, &labels);
            proptest::prop_assert_eq!(&parsed.features, &features);
        }
    }
}
