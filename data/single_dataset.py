"""One domain of images read from <dataroot> itself (subfolders included), for inference."""
from data.base_dataset import BaseDataset, get_transform, transform_image
from data.image_folder import load_image, make_dataset


class SingleDataset(BaseDataset):
    """CUT's 'single' mode: every image under --dataroot, returned as {'A', 'A_paths'}.

    The images are generator inputs whatever --direction says, so they get input_nc channels.
    """

    def __init__(self, opt):
        super().__init__(opt)
        self.A_paths = make_dataset(opt.dataroot, opt.max_dataset_size)
        self.transform = get_transform(opt, grayscale=opt.input_nc == 1)

    def __getitem__(self, index):
        A_path = self.A_paths[index]
        A = transform_image(self.transform, load_image(A_path), A_path)
        return {'A': A, 'A_paths': A_path}

    def __len__(self):
        return len(self.A_paths)
