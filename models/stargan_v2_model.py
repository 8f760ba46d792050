"""StarGAN v2 (Choi et al., CVPR 2020) with the paper's L_semantic: multi-modal, multi-domain translation
(the paper's §4.2, Fig. 5b, Table 2), as the official multi-modal code (Hneg_SRC `Multimodal/`) trains it.

Per iteration, as StarGAN v2: a discriminator step with a latent-guided fake and one with a reference-
guided fake (adversarial + λ_reg·R1 on reals), then a latent-guided generator step (G, mapping network M,
style encoder E and the patch embedder F updated) and a reference-guided one (G only), then the EMA
of G, M, E. The generator's loss: adversarial + λ_sty·style reconstruction − λ_ds·diversity (λ_ds decays
linearly to 0 over --ds_iter steps) + λ_cyc·cycle + L_semantic, the objective of models/objectives.py on
patches of G's encoder features of the source image and of its translation.

Where the official multi-modal code departs from StarGAN v2 or from the single-modal code, a flag names
the choice: `--semantic_query` (official: the source image's patches are the queries and carry the
gradient, the translation's are the detached keys), `--src_batch_reduction` (official: SRC summed over the
batch), `--cycle_source` (StarGAN v2 reconstructs G(G(x, s), s_org); the official multi-modal code
feeds x itself: `real`).
"""
import copy
import json
import os
from collections import OrderedDict

import torch

from models import losses, objectives
from models.base_model import BaseModel
from models.networks import define_F
from models.networks import stargan
from models.networks.averaging import moving_average
from models.src_hdce_model import add_semantic_relation_options, semantic_relation
from util.errors import ConfigError, MissingFileError

SEMANTIC_QUERIES = ('source', 'translation')
CYCLE_SOURCES = ('fake', 'real')
NETWORKS = ('G', 'M', 'E')  # the networks with an EMA copy


def _layers(spec):
    try:
        return [int(t) for t in str(spec).split(',') if t.strip()]
    except ValueError:
        raise ConfigError(f'--mm_nce_layers expects comma-separated integers, got {spec!r}') from None


class StarGANV2Model(BaseModel):
    """StarGAN v2's two D and two G steps per iteration, plus L_semantic in both G steps."""

    # flags that decide the networks: test.py and evaluation read them from the run's train_opt.json
    architecture_keys = ('num_domains', 'mm_generator', 'latent_dim', 'style_dim', 'hidden_dim', 'max_conv_dim',
                         'base_dim', 'w_hpf', 'crop_size', 'load_size', 'mm_nce_layers', 'netF_nc')

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        p = parser
        p.add_argument('--num_domains', type=int, default=2, help='number of domains (subfolders of train/)')
        p.add_argument('--mm_generator', type=str, default='hneg_src', choices=sorted(stargan.MULTIMODAL_GENERATORS),
                       help="hneg_src: the official multi-modal code's generator (2 strided convs + 4 residual "
                            "blocks); stargan_v2: clovaai's")
        p.add_argument('--latent_dim', type=int, default=16, help='dimension of the latent code z')
        p.add_argument('--style_dim', type=int, default=64, help='dimension of the style code s')
        p.add_argument('--hidden_dim', type=int, default=512, help='width of the mapping network')
        p.add_argument('--max_conv_dim', type=int, default=512, help='largest channel count of G, E, D')
        p.add_argument('--base_dim', type=int, default=0,
                       help="channels at full resolution; 0: StarGAN v2's 2**14 // image size")
        p.add_argument('--w_hpf', type=float, default=0.0, help="StarGAN v2's face high-pass weight (only 0)")
        p.add_argument('--lambda_reg', type=float, default=1.0, help='weight of the R1 penalty on real images')
        p.add_argument('--lambda_sty', type=float, default=1.0, help='weight of the style reconstruction loss')
        p.add_argument('--lambda_ds', type=float, default=1.0, help='initial weight of the diversity loss')
        p.add_argument('--ds_iter', type=int, default=100000, help='steps over which lambda_ds decays to 0')
        p.add_argument('--lambda_cyc', type=float, default=1.0, help='weight of the cycle-consistency loss')
        p.add_argument('--cycle_source', type=str, default='fake', choices=CYCLE_SOURCES,
                       help="fake: reconstruct G(G(x,s), s_org) (StarGAN v2); real: G(x, s_org) (the official "
                            "multi-modal code)")
        p.add_argument('--f_lr', type=float, default=1e-6, help='learning rate of the mapping network')
        p.add_argument('--weight_decay', type=float, default=1e-4, help='Adam weight decay of every network')
        p.add_argument('--ema_beta', type=float, default=0.999, help='EMA decay of G, M, E')
        # L_semantic (the official multi-modal flags: --lambda_src, --lambda_dce, --n_patch, --use_hard, ...)
        # lambda_SRC 0.1, HDCE_gamma 50 -> HDCE_gamma_min 1: the official lambda_src, gamma_start, gamma_end
        add_semantic_relation_options(p, curriculum='linearly over --gamma_iter steps')
        p.add_argument('--gamma_iter', type=int, default=100000,
                       help='steps of the gamma curriculum (the official total_iters)')
        p.add_argument('--num_patches', type=int, default=128, help='patches per layer (official n_patch)')
        p.add_argument('--nce_T', type=float, default=0.07, help='temperature of the contrastive term')
        p.add_argument('--mm_nce_layers', type=str, default='',
                       help="encoder blocks whose outputs L_semantic uses; '': the generator's default (the "
                            "official: the blocks at a quarter of the image size)")
        p.add_argument('--netF_nc', type=int, default=256)
        p.add_argument('--semantic_query', type=str, default='source', choices=SEMANTIC_QUERIES,
                       help="which side's patches carry the gradient: source (the official multi-modal code) or "
                            "translation (the single-modal code and CUT)")
        p.add_argument('--src_batch_reduction', type=str, default='sum', choices=['sum', 'mean'],
                       help='SRC over the images of a batch: sum (the official multi-modal code) or mean')
        p.set_defaults(dataset_mode='multidomain', gan_mode='vanilla', lr=1e-4, beta1=0.0, beta2=0.99,
                       batch_size=8, load_size=256, crop_size=256, n_epochs_decay=0, display_ncols=5,
                       lambda_SRC=0.1, lambda_HDCE=1.0, HDCE_gamma=50.0, HDCE_gamma_min=1.0)
        return parser

    def __init__(self, opt, runtime=None):
        super().__init__(opt, runtime)
        if opt.gan_mode not in losses.GAN_MODES:
            raise ConfigError(f'--gan_mode {opt.gan_mode!r}: valid {losses.GAN_MODES}')
        if opt.num_domains < 2:
            raise ConfigError(f'--num_domains must be >= 2, got {opt.num_domains}')
        if opt.crop_size != opt.load_size:
            raise ConfigError(f'--crop_size {opt.crop_size} and --load_size {opt.load_size} differ: StarGAN v2 '
                             f'resizes images to one size (crops are --randcrop_prob\'s random resized crops)')
        img, base = opt.crop_size, opt.base_dim or None
        self.netG = stargan.build_generator(opt.mm_generator, img_size=img, style_dim=opt.style_dim,
                                            max_conv_dim=opt.max_conv_dim, base_dim=base, w_hpf=opt.w_hpf)
        self.netM = stargan.MappingNetwork(opt.latent_dim, opt.style_dim, opt.num_domains, hidden_dim=opt.hidden_dim)
        self.netE = stargan.StyleEncoder(img, opt.style_dim, opt.num_domains, max_conv_dim=opt.max_conv_dim,
                                         base_dim=base)
        self.nce_layers = _layers(opt.mm_nce_layers) or self.netG.default_feature_layers()
        self.netG.feature_channels(self.nce_layers)  # an index outside the encoder fails here
        for name in NETWORKS:
            getattr(self, 'net' + name).apply(stargan.he_init)
        self.steps = 0  # optimisation steps so far: the λ_ds decay and the γ curriculum count them
        self.visual_names = ['real_A', 'fake_latent', 'ref', 'fake_ref', 'rec']
        self.loss_names = []
        if not self.isTrain:  # testing loads the EMA networks alone, into these
            self.model_names = [n + '_ema' for n in NETWORKS]
            for name in NETWORKS:
                setattr(self, f'net{name}_ema', getattr(self, 'net' + name))
                delattr(self, 'net' + name)
            self._to_device()
            return
        self.netD = stargan.Discriminator(img, opt.num_domains, max_conv_dim=opt.max_conv_dim, base_dim=base)
        self.netD.apply(stargan.he_init)
        self.netF = define_F('mlp_sample', netF_nc=opt.netF_nc)
        self.netF.build(self.netG.feature_channels(self.nce_layers))
        self.netF.apply(stargan.he_init)
        # the EMA copies start from the initialised networks (the official code copies them before
        # initialising, so they begin at PyTorch's default initialisation: 13 % of the EMA after 2,000 steps)
        for name in NETWORKS:
            setattr(self, f'net{name}_ema', copy.deepcopy(getattr(self, 'net' + name)).requires_grad_(False))
        self.model_names = ['G', 'M', 'E', 'D', 'F'] + [n + '_ema' for n in NETWORKS]
        self.objective = self.build_objective(opt)
        for step in ('latent', 'ref'):
            self.loss_names += [f'D_{step}_real', f'D_{step}_fake', f'D_{step}_reg']
        for step in ('latent', 'ref'):
            self.loss_names += [f'G_{step}_{t}' for t in ('adv', 'sty', 'ds', 'cyc', *self.objective.term_names)]
        self.loss_names += ['lambda_ds']

        def adam(params, lr):
            return self.runtime.adam(params, lr=lr, betas=(opt.beta1, opt.beta2), weight_decay=opt.weight_decay)
        self.optimizer_G = adam(self.netG.parameters(), opt.lr)
        self.optimizer_M = adam(self.netM.parameters(), opt.f_lr)
        self.optimizer_E = adam(self.netE.parameters(), opt.lr)
        self.optimizer_D = adam(self.netD.parameters(), opt.lr)
        self.optimizers = [self.optimizer_G, self.optimizer_M, self.optimizer_E, self.optimizer_D]
        self.optimizer_F = None  # F has no gradient without L_semantic (and DDP would wait for one)
        if self.objective.uses_features:
            self.optimizer_F = adam(self.netF.parameters(), opt.lr)
            self.optimizers.append(self.optimizer_F)
        self._to_device()

    def _to_device(self):
        for name in self.model_names:
            getattr(self, 'net' + name).to(self.device)

    @staticmethod
    def build_objective(opt):
        """L_semantic with the official multi-modal settings: γ annealed per step over --gamma_iter."""
        hardness = objectives.Curriculum(opt.HDCE_gamma, opt.HDCE_gamma_min, opt.gamma_iter,
                                         use_curriculum=opt.use_curriculum)
        return semantic_relation(opt, hardness, src_reduction=opt.src_batch_reduction)

    # ---- data --------------------------------------------------------------------------------
    def set_input(self, input):
        """A multidomain batch: source images and domains, two reference images of one domain each (the
        target domains), and two latent codes per image drawn here (the device's generator, saved for resume)."""
        self.real_A = self.to_input(input['A'])
        for labels in (input['A_domain'], input['ref_domain']):  # on the host, before they reach the device
            stargan.check_domains(labels.cpu(), self.opt.num_domains, labels.shape[0])
        self.y_src = input['A_domain'].to(self.device, non_blocking=True)
        self.ref = self.to_input(input['ref'])
        self.ref2 = self.to_input(input['ref2'])
        self.y_trg = input['ref_domain'].to(self.device, non_blocking=True)
        n = self.real_A.size(0)
        self.z = torch.randn(n, self.opt.latent_dim, device=self.device)  # on the device: no copy waits for it
        self.z2 = torch.randn(n, self.opt.latent_dim, device=self.device)
        # <domain>_<file>: the domains' folders reuse file names, and test.py names its outputs by file
        self.image_paths = [f'{os.path.basename(os.path.dirname(p))}_{os.path.basename(p)}' for p in input['A_paths']]

    def lambda_ds(self):
        """StarGAN v2's diversity weight at the current step: linear from --lambda_ds to 0 over --ds_iter."""
        if self.opt.ds_iter <= 0:
            return 0.0
        return self.opt.lambda_ds * max(0.0, 1.0 - self.steps / self.opt.ds_iter)

    # ---- networks ----------------------------------------------------------------------------
    def net(self, name):
        """Network `name` as this pass should call it: the EMA copy when testing; in training the DDP-wrapped one
        (under torchrun) only when it is being trained, since DDP waits for the gradients of every pass it runs."""
        if not self.isTrain:
            return getattr(self, f'net{name}_ema')
        module = self._unwrapped(name)
        trained = torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())
        return getattr(self, 'net' + name) if trained else module

    def style(self, guide, y):
        """Style codes of domains `y` from latent codes (2-d: mapping network) or reference images (4-d:
        style encoder)."""
        return self.net('M')(guide, y) if guide.dim() == 2 else self.net('E')(guide, y)

    # ---- losses ------------------------------------------------------------------------------
    def discriminator_loss(self, guide, prefix):
        """Adversarial loss of D on reals (with λ_reg·R1) and on one latent- or reference-guided fake."""
        real = self.real_A.detach().requires_grad_(self.opt.lambda_reg > 0)
        with torch.no_grad(), self.runtime.autocast():
            fake = self.net('G')(self.real_A, self.style(guide, self.y_trg))
        with self.runtime.autocast():
            pred_real = self.net('D')(real, self.y_src).float()
            pred_fake = self.net('D')(fake, self.y_trg).float()
        self.losses[f'D_{prefix}_real'] = losses.gan_loss(pred_real, True, self.opt.gan_mode).mean()
        self.losses[f'D_{prefix}_fake'] = losses.gan_loss(pred_fake, False, self.opt.gan_mode).mean()
        loss = self.losses[f'D_{prefix}_real'] + self.losses[f'D_{prefix}_fake']
        if self.opt.lambda_reg > 0:  # StarGAN v2's R1: ½ ||∇_x D(x)||² per image, mean over the batch
            with self.runtime.autocast():  # scaled and unscaled under --amp fp16 (AMP's gradient-penalty recipe)
                r1 = losses.r1_penalty(pred_real, real, self.runtime.loss_scale())
            self.losses[f'D_{prefix}_reg'] = r1.mean() * 0.5
            loss = loss + self.opt.lambda_reg * self.losses[f'D_{prefix}_reg']
        else:
            self.losses[f'D_{prefix}_reg'] = torch.zeros((), device=self.device)
        return loss

    def semantic_sample(self, fake):
        """The objective's `sample` for one G step: patches of G's encoder features of the source image and
        of its translation at shared locations; which side is the query follows --semantic_query."""
        G = self._unwrapped('G')

        def sample(branch, ids=None):
            if branch != 'X':
                raise ConfigError('the multi-modal model has no identity branch')
            query_is_source = self.opt.semantic_query == 'source'
            with self.runtime.autocast():
                with torch.set_grad_enabled(query_is_source):
                    source = G.encode(self.real_A, self.nce_layers)
                with torch.set_grad_enabled(not query_is_source):
                    target = G.encode(fake if not query_is_source else fake.detach(), self.nce_layers)
            query, key = (source, target) if query_is_source else (target, source)
            with torch.autocast(self.device.type, enabled=False):  # F in float32, as models/patch_contrastive.py
                q, ids = self.net('F')(query, self.opt.num_patches, ids, generator=self.patch_generator)
                with torch.no_grad():
                    k, _ = self.net('F')(key, self.opt.num_patches, ids)
            n = fake.size(0)
            return [p.reshape(n, -1, p.shape[-1]) for p in q], [p.reshape(n, -1, p.shape[-1]) for p in k], ids
        return sample

    def generator_loss(self, guides, prefix):
        """StarGAN v2's generator loss for one guidance (two latent codes or two references) + L_semantic."""
        opt, G, E = self.opt, self.net('G'), self.net('E')
        with self.runtime.autocast():
            s_trg = self.style(guides[0], self.y_trg)
            fake = G(self.real_A, s_trg)
            pred = self.net('D')(fake, self.y_trg).float()  # D is frozen here
            s_pred = E(fake, self.y_trg)
            with torch.no_grad():
                fake2 = self.net('G')(self.real_A, self.style(guides[1], self.y_trg))
            s_org = E(self.real_A, self.y_src)
            rec = G(fake if opt.cycle_source == 'fake' else self.real_A, s_org)
        fake = fake.float()
        terms = OrderedDict()
        terms['adv'] = losses.gan_loss(pred, True, opt.gan_mode).mean()
        terms['sty'] = (s_pred.float() - s_trg.float()).abs().mean()
        terms['ds'] = (fake - fake2.float()).abs().mean()
        terms['cyc'] = (rec.float() - self.real_A).abs().mean()
        # γ stays at its end value past --gamma_iter (the official run stops there)
        semantic = self.objective(self.semantic_sample(fake), min(self.steps, opt.gamma_iter))
        for name, value in list(terms.items()) + list(semantic.items()):
            self.losses[f'G_{prefix}_{name}'] = value
        self.fake_latent_or_ref = fake.detach(), rec.detach()
        return (terms['adv'] + opt.lambda_sty * terms['sty'] - self.lambda_ds() * terms['ds']
                + opt.lambda_cyc * terms['cyc'] + self.objective.total(semantic))

    # ---- training step -----------------------------------------------------------------------
    def optimize_parameters(self):
        self.losses['lambda_ds'] = self.lambda_ds()
        self.set_requires_grad(self._unwrapped('D'), True)
        for guide, prefix in ((self.z, 'latent'), (self.ref, 'ref')):
            self.optimizer_D.zero_grad(set_to_none=True)
            self.runtime.backward(self.discriminator_loss(guide, prefix))
            self.runtime.step(self.optimizer_D)
            self.runtime.update()

        self.set_requires_grad(self._unwrapped('D'), False)
        latent = [o for o in (self.optimizer_G, self.optimizer_M, self.optimizer_E, self.optimizer_F) if o is not None]
        for o in latent:
            o.zero_grad(set_to_none=True)
        self.runtime.backward(self.generator_loss((self.z, self.z2), 'latent'))
        self.runtime.step(*latent)
        self.runtime.update()
        self.fake_latent, _ = self.fake_latent_or_ref

        # the reference-guided step trains G alone (the official code computes the other gradients and
        # discards them): M, E, F are frozen for it
        self.set_requires_grad([self._unwrapped(n) for n in 'MEF'], False)
        self.optimizer_G.zero_grad(set_to_none=True)
        self.runtime.backward(self.generator_loss((self.ref, self.ref2), 'ref'))
        self.runtime.step(self.optimizer_G)
        self.runtime.update()
        self.set_requires_grad([self._unwrapped(n) for n in 'MEF'], True)
        self.fake_ref, self.rec = self.fake_latent_or_ref
        del self.fake_latent_or_ref

        with torch.no_grad():
            for name in NETWORKS:
                moving_average(self._unwrapped(name), getattr(self, f'net{name}_ema'), self.opt.ema_beta)
        self.steps += 1

    # ---- inference ---------------------------------------------------------------------------
    def forward(self):
        """Latent- and reference-guided translations of the batch by the EMA networks (test.py, visuals)."""
        with self.runtime.autocast():
            G = self._unwrapped('G_ema')
            self.fake_latent = G(self.real_A, self._unwrapped('M_ema')(self.z, self.y_trg)).float()
            self.fake_ref = G(self.real_A, self._unwrapped('E_ema')(self.ref, self.y_trg)).float()
            self.rec = G(self.fake_latent, self._unwrapped('E_ema')(self.real_A, self.y_src)).float()

    def compute_visuals(self):
        if self.isTrain:
            with torch.no_grad():
                self.forward()

    # ---- checkpoints -------------------------------------------------------------------------
    def training_state(self, *args, **kwargs):
        return dict(super().training_state(*args, **kwargs), model_steps=self.steps)

    def load_training_state(self, state):
        counters = super().load_training_state(state)
        self.steps = int(state['model_steps'])
        return counters


class Translator:
    """What the evaluation (evaluation/multimodal.py) needs of a trained run: its EMA networks as
    style_from_latent / style_from_reference / generate, plus the run's domains and sizes."""

    def __init__(self, model, domains):
        self.model, self.domains = model, domains
        opt = model.opt
        self.num_domains, self.latent_dim, self.img_size = opt.num_domains, opt.latent_dim, opt.crop_size
        self.device = model.device

    @torch.no_grad()
    def style_from_latent(self, z, y):
        return self.model._unwrapped('M_ema')(z.to(self.device), y.to(self.device))

    @torch.no_grad()
    def style_from_reference(self, x_ref, y):
        return self.model._unwrapped('E_ema')(x_ref.to(self.device), y.to(self.device))

    @torch.no_grad()
    def generate(self, x_src, s):
        with self.model.runtime.autocast():
            return self.model._unwrapped('G_ema')(x_src.to(self.device), s).float().clamp(-1, 1)


def load_translator(checkpoints_dir, name, epoch='latest', device='cpu', dataroot=None):
    """The EMA networks of run `name` at `epoch`, built from its train_opt.json, as a Translator. Domain names
    are the sorted subfolders of `<dataroot>/train` (default: the run's --dataroot)."""
    import argparse
    from models.runtime import Runtime
    path = os.path.join(checkpoints_dir, name, 'train_opt.json')
    if not os.path.isfile(path):
        raise MissingFileError(f'{path} not found: --checkpoints_dir/--name must name a run trained with '
                                f'--model stargan_v2')
    try:
        with open(path) as f:
            saved = json.load(f)
    except ValueError as exc:
        raise ConfigError(f'{path} is not valid JSON: {exc}') from exc
    if saved.get('model') != 'stargan_v2':
        raise ConfigError(f'{path}: the run was trained with --model {saved.get("model")}, not stargan_v2')
    dataroot = dataroot or saved['dataroot']
    opt = argparse.Namespace(**dict(saved, isTrain=False, checkpoints_dir=checkpoints_dir, name=name,
                                    epoch=str(epoch), gpu_ids=[], pretrained_name=None, verbose=False))
    model = StarGANV2Model(opt, Runtime(device))
    model.setup(opt)
    model.eval()
    train_dir = os.path.join(dataroot, 'train')
    domains = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d))) \
        if os.path.isdir(train_dir) else [str(i) for i in range(opt.num_domains)]
    if len(domains) != opt.num_domains:
        raise ConfigError(f'{train_dir} has {len(domains)} domain folders, the run was trained with --num_domains '
                         f'{opt.num_domains}')
    return Translator(model, domains)
