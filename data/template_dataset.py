"""A working example to copy when adding a dataset.

To add a dataset 'dummy':
1. copy this file to data/dummy_dataset.py and rename the class DummyDataset;
2. read your files in __init__, and return a dict of tensors (plus paths) from __getitem__;
3. add your flags in modify_commandline_options, prefixed with the dataset's name;
4. train with --dataset_mode dummy.
The models read 'A' (and 'B' during training) and the paths 'A_paths' / 'B_paths'.
"""
import os

from data.base_dataset import BaseDataset, find_images, get_transform, read_image, transform_image


class TemplateDataset(BaseDataset):
    """Images of one folder under --dataroot, returned as both A and B (an identity task)."""

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add this dataset's flags. `parser.set_defaults(...)` could also change shared defaults."""
        parser.add_argument('--template_folder', type=str, default='',
                            help='folder under --dataroot to read; empty means <phase>A')
        return parser

    def __init__(self, opt):
        super().__init__(opt)
        self.dir = os.path.join(opt.dataroot, opt.template_folder or opt.phase + 'A')
        self.paths = find_images(opt, self.dir)
        self.transform = get_transform(opt, grayscale=opt.input_nc == 1)

    def __getitem__(self, index):
        path = self.paths[index]
        image = transform_image(self.transform, read_image(path), path)  # (C, H, W) in [-1, 1]
        return {'A': image, 'B': image, 'A_paths': path, 'B_paths': path}

    def __len__(self):
        return len(self.paths)
